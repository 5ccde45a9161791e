from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Authorization(_message.Message):
    __slots__ = ("consent_id", "purpose")
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    purpose: str
    def __init__(self, consent_id: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("model_id", "ids", "auth", "guest_features", "feature_names", "reasons", "unknown")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    GUEST_FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    auth: Authorization
    guest_features: bytes
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    reasons: int
    unknown: str
    def __init__(self, model_id: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., auth: _Optional[_Union[Authorization, _Mapping]] = ..., guest_features: _Optional[bytes] = ..., feature_names: _Optional[_Iterable[str]] = ..., reasons: _Optional[int] = ..., unknown: _Optional[str] = ...) -> None: ...

class ScoreReply(_message.Message):
    __slots__ = ("scores", "request_id", "n", "log_odds", "reason_names", "reason_index", "reason_values", "k", "scale", "guest_held")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    LOG_ODDS_FIELD_NUMBER: _ClassVar[int]
    REASON_NAMES_FIELD_NUMBER: _ClassVar[int]
    REASON_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_VALUES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    GUEST_HELD_FIELD_NUMBER: _ClassVar[int]
    scores: bytes
    request_id: str
    n: int
    log_odds: bytes
    reason_names: _containers.RepeatedScalarFieldContainer[str]
    reason_index: bytes
    reason_values: bytes
    k: int
    scale: ScoreScale
    guest_held: bytes
    def __init__(self, scores: _Optional[bytes] = ..., request_id: _Optional[str] = ..., n: _Optional[int] = ..., log_odds: _Optional[bytes] = ..., reason_names: _Optional[_Iterable[str]] = ..., reason_index: _Optional[bytes] = ..., reason_values: _Optional[bytes] = ..., k: _Optional[int] = ..., scale: _Optional[_Union[ScoreScale, _Mapping]] = ..., guest_held: _Optional[bytes] = ...) -> None: ...

class ScoreScale(_message.Message):
    __slots__ = ("pdo", "base_score", "base_odds")
    PDO_FIELD_NUMBER: _ClassVar[int]
    BASE_SCORE_FIELD_NUMBER: _ClassVar[int]
    BASE_ODDS_FIELD_NUMBER: _ClassVar[int]
    pdo: float
    base_score: float
    base_odds: float
    def __init__(self, pdo: _Optional[float] = ..., base_score: _Optional[float] = ..., base_odds: _Optional[float] = ...) -> None: ...

class ContributeRequest(_message.Message):
    __slots__ = ("model_id", "request_id", "id_digests", "auth", "hosts", "queries", "final", "reasons")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ID_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    request_id: str
    id_digests: bytes
    auth: Authorization
    hosts: _containers.RepeatedScalarFieldContainer[str]
    queries: TreeQueries
    final: bool
    reasons: bool
    def __init__(self, model_id: _Optional[str] = ..., request_id: _Optional[str] = ..., id_digests: _Optional[bytes] = ..., auth: _Optional[_Union[Authorization, _Mapping]] = ..., hosts: _Optional[_Iterable[str]] = ..., queries: _Optional[_Union[TreeQueries, _Mapping]] = ..., final: _Optional[bool] = ..., reasons: _Optional[bool] = ...) -> None: ...

class TreeQueries(_message.Message):
    __slots__ = ("split_ids", "counts", "rows")
    SPLIT_IDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    split_ids: bytes
    counts: bytes
    rows: bytes
    def __init__(self, split_ids: _Optional[bytes] = ..., counts: _Optional[bytes] = ..., rows: _Optional[bytes] = ...) -> None: ...

class ContributeReply(_message.Message):
    __slots__ = ("kind", "masked", "decisions", "n", "n_decisions", "masked_reference", "contributions", "reason_features", "reason_texts")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    N_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    MASKED_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    REASON_FEATURES_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXTS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    masked: bytes
    decisions: bytes
    n: int
    n_decisions: int
    masked_reference: bytes
    contributions: bytes
    reason_features: _containers.RepeatedScalarFieldContainer[str]
    reason_texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., masked: _Optional[bytes] = ..., decisions: _Optional[bytes] = ..., n: _Optional[int] = ..., n_decisions: _Optional[int] = ..., masked_reference: _Optional[bytes] = ..., contributions: _Optional[bytes] = ..., reason_features: _Optional[_Iterable[str]] = ..., reason_texts: _Optional[_Iterable[str]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("model_id", "request_id", "queries", "final")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    request_id: str
    queries: TreeQueries
    final: bool
    def __init__(self, model_id: _Optional[str] = ..., request_id: _Optional[str] = ..., queries: _Optional[_Union[TreeQueries, _Mapping]] = ..., final: _Optional[bool] = ...) -> None: ...

class DecideReply(_message.Message):
    __slots__ = ("decisions", "n_decisions")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    N_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: bytes
    n_decisions: int
    def __init__(self, decisions: _Optional[bytes] = ..., n_decisions: _Optional[int] = ...) -> None: ...

class PairSecretRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class PairSecretReply(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: bytes
    def __init__(self, secret: _Optional[bytes] = ...) -> None: ...

class AuditHead(_message.Message):
    __slots__ = ("seq", "hash", "party")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hash: str
    party: str
    def __init__(self, seq: _Optional[int] = ..., hash: _Optional[str] = ..., party: _Optional[str] = ...) -> None: ...

class HeldHeadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeldHeadsReply(_message.Message):
    __slots__ = ("heads",)
    HEADS_FIELD_NUMBER: _ClassVar[int]
    heads: _containers.RepeatedCompositeFieldContainer[AuditHead]
    def __init__(self, heads: _Optional[_Iterable[_Union[AuditHead, _Mapping]]] = ...) -> None: ...

class RevokeRequest(_message.Message):
    __slots__ = ("peer", "reason")
    PEER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    peer: str
    reason: str
    def __init__(self, peer: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AdmitRequest(_message.Message):
    __slots__ = ("peer", "reason")
    PEER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    peer: str
    reason: str
    def __init__(self, peer: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdminReply(_message.Message):
    __slots__ = ("ok", "message")
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    message: str
    def __init__(self, ok: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class ApproveExportRequest(_message.Message):
    __slots__ = ("model_id", "requester", "note")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    requester: str
    note: str
    def __init__(self, model_id: _Optional[str] = ..., requester: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("model_id", "note")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    note: str
    def __init__(self, model_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ExportReply(_message.Message):
    __slots__ = ("model_json",)
    MODEL_JSON_FIELD_NUMBER: _ClassVar[int]
    model_json: str
    def __init__(self, model_json: _Optional[str] = ...) -> None: ...

class ExportPartRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ExportPartReply(_message.Message):
    __slots__ = ("part_json",)
    PART_JSON_FIELD_NUMBER: _ClassVar[int]
    part_json: str
    def __init__(self, part_json: _Optional[str] = ...) -> None: ...

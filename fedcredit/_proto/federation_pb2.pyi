from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MessageKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MESSAGE_KIND_UNSPECIFIED: _ClassVar[MessageKind]
    MESSAGE_KIND_DATA: _ClassVar[MessageKind]
    MESSAGE_KIND_ABORT: _ClassVar[MessageKind]
MESSAGE_KIND_UNSPECIFIED: MessageKind
MESSAGE_KIND_DATA: MessageKind
MESSAGE_KIND_ABORT: MessageKind

class Header(_message.Message):
    __slots__ = ("job_id", "tag", "message_id", "sender", "total_size", "sha256", "chunk_count", "kind", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tag: str
    message_id: str
    sender: str
    total_size: int
    sha256: bytes
    chunk_count: int
    kind: MessageKind
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., tag: _Optional[str] = ..., message_id: _Optional[str] = ..., sender: _Optional[str] = ..., total_size: _Optional[int] = ..., sha256: _Optional[bytes] = ..., chunk_count: _Optional[int] = ..., kind: _Optional[_Union[MessageKind, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("header", "seq", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: Header
    seq: int
    data: bytes
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., seq: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class PushAck(_message.Message):
    __slots__ = ("duplicate", "received_bytes")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    received_bytes: int
    def __init__(self, duplicate: _Optional[bool] = ..., received_bytes: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class PingReply(_message.Message):
    __slots__ = ("party",)
    PARTY_FIELD_NUMBER: _ClassVar[int]
    party: str
    def __init__(self, party: _Optional[str] = ...) -> None: ...

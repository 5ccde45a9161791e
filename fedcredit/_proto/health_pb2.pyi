from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthCheckRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthCheckReply(_message.Message):
    __slots__ = ("status", "party", "version", "running_jobs", "caller", "cert_not_after", "ca_not_after")
    class ServingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SERVING_STATUS_UNSPECIFIED: _ClassVar[HealthCheckReply.ServingStatus]
        SERVING: _ClassVar[HealthCheckReply.ServingStatus]
        NOT_SERVING: _ClassVar[HealthCheckReply.ServingStatus]
    SERVING_STATUS_UNSPECIFIED: HealthCheckReply.ServingStatus
    SERVING: HealthCheckReply.ServingStatus
    NOT_SERVING: HealthCheckReply.ServingStatus
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CERT_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    CA_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    status: HealthCheckReply.ServingStatus
    party: str
    version: str
    running_jobs: int
    caller: str
    cert_not_after: float
    ca_not_after: float
    def __init__(self, status: _Optional[_Union[HealthCheckReply.ServingStatus, str]] = ..., party: _Optional[str] = ..., version: _Optional[str] = ..., running_jobs: _Optional[int] = ..., caller: _Optional[str] = ..., cert_not_after: _Optional[float] = ..., ca_not_after: _Optional[float] = ...) -> None: ...

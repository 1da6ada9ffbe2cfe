"""Path converters of the URL conf: identifiers in URLs are checked by shape before any view or
database sees them."""

from django.urls import register_converter


class ObjectIdConverter:
    """A database id: 1 to 18 digits, so it always fits PostgreSQL's bigint (a longer number
    would be a database error, not a 404)."""

    regex = "[1-9][0-9]{0,17}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


class ClientIdConverter:
    """A client_id in a URL: the characters DOT's generator and RFC 3986's unreserved set use, so a
    NUL byte or a 10 KB value never reaches the database."""

    regex = "[A-Za-z0-9._~-]{1,100}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ObjectIdConverter, "object_id")
register_converter(ClientIdConverter, "client_id")

"""Schema fields shared by the API's schemas."""
from __future__ import annotations

import datetime as dt

from marshmallow import ValidationError, fields

from hub.core.models import iso_utc


class UtcDateTime(fields.DateTime):
    """A time in UTC: written as ISO 8601 with ``Z`` (the database keeps naive UTC); read with
    any offset (none means UTC) and handed over as naive UTC, the way it is stored."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso_utc(value)

    def _deserialize(self, value, attr, data, **kwargs) -> dt.datetime:
        when = super()._deserialize(value, attr, data, **kwargs)
        try:
            return when.astimezone(dt.timezone.utc).replace(tzinfo=None) if when.tzinfo else when
        except OverflowError as exc:  # 9999-12-31T23:00-05:00, 0001-01-01T00:00+05:00
            raise ValidationError("out of range once converted to UTC") from exc

"""Schema fields shared by the API's schemas."""
from __future__ import annotations

import datetime as dt

from marshmallow import fields

from hub.core.models import iso_utc


class UtcDateTime(fields.DateTime):
    """A time in UTC: written as ISO 8601 with ``Z`` (the database keeps naive UTC); read with
    any offset (none means UTC) and handed over as naive UTC, the way it is stored."""

    def _serialize(self, value, attr, obj, **kwargs):
        return iso_utc(value)

    def _deserialize(self, value, attr, data, **kwargs) -> dt.datetime:
        when = super()._deserialize(value, attr, data, **kwargs)
        return when.astimezone(dt.timezone.utc).replace(tzinfo=None) if when.tzinfo else when

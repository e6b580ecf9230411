"""Model bases: how each family of API fields is spelled on the wire."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel, to_pascal


class WireModel(BaseModel):
    """Unknown fields are kept (APIs grow); ``to_wire`` drops unset values, as the services expect."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", defer_build=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_json_str(self) -> str:
        """Compact JSON text, as sent in SCA's ``JsonStr`` parameter."""
        return json.dumps(self.to_wire(), ensure_ascii=False, separators=(",", ":"))


class CamelModel(WireModel):
    """SCA request bodies (``JsonStr``) and CCC's ``ParamsStr``: ``camelCase`` keys."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", defer_build=True)


class PascalModel(WireModel):
    """Alibaba Cloud response envelopes and SCA results: ``PascalCase`` keys."""

    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="allow", defer_build=True)


def first_problem(exc: ValidationError) -> str:
    """The first validation problem as ``where: what``, for error messages."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top)"
    return f"{where}: {first['msg']}"

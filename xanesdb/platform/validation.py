"""Schema enforcement at the database: MongoDB ``$jsonSchema`` validators from the pydantic schemas.

Every collection of :data:`xanesdb.platform.stores.COLLECTIONS` gets a validator generated from
its pydantic document (``xanesdb.schemas``), so a document written by anyone -- xanesdb, another
group's pymongo script, mongosh -- is checked by the server itself (``validationLevel: strict``,
``validationAction: error``). xanesdb additionally validates every document with pydantic before
it writes it; the server-side validator is the second line, for writers that are not xanesdb.

The translation from pydantic's JSON Schema to MongoDB's ``$jsonSchema`` dialect:

- ``$ref``/``$defs`` are inlined (MongoDB has no references);
- ``string``/``boolean``/``null``/``object``/``array`` -> the BSON types of the same meaning,
  ``integer`` -> ``["int", "long"]``, ``number`` -> ``["double", "int", "long"]``;
- ``Optional[X]`` (``anyOf [X, null]``) -> ``bsonType: [X..., "null"]``, other unions -> ``anyOf``;
- datetimes: ``last_updated`` is a BSON ``date`` (:meth:`~xanesdb.schemas.XanesdbDoc.to_mongo`
  keeps it one); other datetime fields (e.g. ``TrainingRunDoc.created``) are written by
  ``to_mongo`` as ISO-8601 text, so they accept a ``date`` or a string that starts like one;
- models with ``extra="forbid"`` -> ``additionalProperties: false``; at the top level ``_id`` is
  added to the properties so the server's own key is allowed;
- ``title``, ``default``, ``format`` and ``examples`` are dropped (MongoDB refuses ``default`` and
  ``format``); ``description`` is kept (MongoDB shows it in ``listCollections``).

Examples
--------
>>> from xanesdb.platform.validation import validator_for
>>> validator_for("spectra")["$jsonSchema"]["properties"]["mu"]["bsonType"]
'array'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError, WriteError

from xanesdb.platform.errors import XanesdbUserError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pymongo.collection import Collection
    from pymongo.database import Database

logger = logging.getLogger(__name__)

__all__ = [
    "BSON_DATE_FIELDS",
    "DocumentValidationError",
    "mongo_json_schema",
    "validator_for",
    "apply_validator",
    "apply_validators",
    "explain_write_error",
    "translate_validation_errors",
    "validated_doc",
]

#: datetime fields that :meth:`XanesdbDoc.to_mongo` stores as BSON dates (others are ISO text)
BSON_DATE_FIELDS = frozenset({"last_updated"})
#: ISO-8601 text as pydantic writes datetimes: 2024-01-31T12:00:00...
ISO_DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
#: MongoDB's code for "Document failed validation"
DOCUMENT_VALIDATION_FAILURE = 121

_JSON_TO_BSON = {
    "string": "string",
    "boolean": "bool",
    "null": "null",
    "object": "object",
    "array": "array",
    "integer": ["int", "long"],
    "number": ["double", "int", "long"],
}
_DROPPED = {"title", "default", "format", "examples", "$defs", "deprecated", "readOnly", "writeOnly"}
_KEPT = {
    "description", "enum", "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength",
    "pattern", "required", "uniqueItems",
}  # fmt: skip


class DocumentValidationError(XanesdbUserError):
    """The database (or pydantic) refused a document; the message names the field(s)."""

    def __init__(self, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.fields = fields or []


def _as_list(types: Any) -> list[str]:
    return list(types) if isinstance(types, list) else [types]


def _bson_types(json_type: Any) -> list[str]:
    out: list[str] = []
    for t in _as_list(json_type):
        for b in _as_list(_JSON_TO_BSON[t]):
            if b not in out:
                out.append(b)
    return out


def _simplify(types: list[str]) -> str | list[str]:
    return types[0] if len(types) == 1 else types


def _convert(schema: dict[str, Any], defs: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """One pydantic JSON-Schema node -> a MongoDB ``$jsonSchema`` node."""
    if "$ref" in schema:
        ref = schema["$ref"].split("/")[-1]
        merged = {**defs[ref], **{k: v for k, v in schema.items() if k != "$ref"}}
        return _convert(merged, defs, name)
    if "allOf" in schema and len(schema["allOf"]) == 1:  # pydantic wraps described refs like this
        merged = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
        return _convert(merged, defs, name)
    out: dict[str, Any] = {k: v for k, v in schema.items() if k in _KEPT}
    if schema.get("format") == "date-time":
        if name in BSON_DATE_FIELDS:
            out["bsonType"] = "date"
        else:
            out["anyOf"] = [{"bsonType": "date"}, {"bsonType": "string", "pattern": ISO_DATETIME_PATTERN}]
        return out
    if "anyOf" in schema:
        branches = [_convert(b, defs, name) for b in schema["anyOf"]]
        # Optional[X] of plain types: one bsonType list
        if all(set(b) <= {"bsonType", "description"} and "bsonType" in b for b in branches):
            types: list[str] = []
            for b in branches:
                types += [t for t in _as_list(b["bsonType"]) if t not in types]
            out["bsonType"] = _simplify(types)
        else:
            # a Literal or a model that may be null: the null branch stays a branch
            out["anyOf"] = [{k: v for k, v in b.items() if k != "description"} for b in branches]
        return out
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "type" in schema:
        out["bsonType"] = _simplify(_bson_types(schema["type"]))
    if "properties" in schema:
        out["properties"] = {k: _convert(v, defs, k) for k, v in schema["properties"].items()}
    if "additionalProperties" in schema:
        ap = schema["additionalProperties"]
        if ap is False:
            out["additionalProperties"] = False
        elif isinstance(ap, dict) and ap:
            out["additionalProperties"] = _convert(ap, defs)
        # True / {} (dict[str, Any]): no constraint, leave it out
    if "items" in schema and isinstance(schema["items"], dict):
        items = _convert(schema["items"], defs)
        if items:
            out["items"] = items
    for kw in set(schema) - _DROPPED - _KEPT - {"type", "properties", "additionalProperties", "items", "const"}:
        raise ValueError(f"cannot translate JSON-Schema keyword {kw!r} of field {name!r} to $jsonSchema")
    return out


def mongo_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The MongoDB ``$jsonSchema`` of a pydantic model (serialisation side: what ``to_mongo`` writes).

    Every field ``to_mongo`` always writes is required: the pydantic-required ones plus
    ``schema_version`` and ``last_updated``, so an old document (no schema version) cannot be
    rewritten without being migrated (``xanesdb db migrate``).
    """
    js = model.model_json_schema(mode="serialization")
    defs = js.get("$defs", {})
    out = _convert(js, defs)
    props = out.setdefault("properties", {})
    props["_id"] = {"description": "The server's document id."}
    required = list(out.get("required", []))
    for f in ("schema_version", "last_updated"):
        if f in props and f not in required:
            required.append(f)
    out["required"] = required
    out["title"] = f"{model.__name__} (xanesdb)"
    return out


def _model_for(collection: str) -> type[BaseModel]:
    from xanesdb.schemas import DOCUMENT_FOR_COLLECTION as models

    if collection not in models:
        raise ValueError(f"no schema for collection {collection!r}; one of {sorted(models)}")
    return models[collection]


def validator_for(collection: str) -> dict[str, Any]:
    """The ``validator`` document (``{"$jsonSchema": ...}``) of one xanesdb collection."""
    return {"$jsonSchema": mongo_json_schema(_model_for(collection))}


def apply_validator(collection: Collection, name: str | None = None) -> bool:
    """Create the collection with its validator, or ``collMod`` it in (idempotent).

    Returns True if the validator was (re)applied, False if it was already in place or could
    not be applied; like :func:`~xanesdb.platform.stores.ensure_indexes`, a refusal (a
    read-only or writer user may not run ``collMod``) is logged, not raised.
    """
    from pymongo.collection import Collection as PymongoCollection

    if not isinstance(collection, PymongoCollection):  # e.g. mongomock in unit tests: nothing to enforce
        return False
    name = name or collection.name
    db = collection.database
    wanted = validator_for(name)
    options = {"validator": wanted, "validationLevel": "strict", "validationAction": "error"}
    try:
        info = next(iter(db.list_collections(filter={"name": name})), None)
        if info is None:
            db.create_collection(name, **options)
            logger.debug("created %s with its validator", name)
            return True
        current = info.get("options", {})
        if all(current.get(k) == v for k, v in options.items()):
            return False
        db.command("collMod", name, **options)
        logger.debug("applied the validator of %s", name)
        return True
    except PyMongoError as err:
        if isinstance(err, OperationFailure) and err.code == 48:  # created meanwhile by another process
            return apply_validator(collection, name)
        # a user without the right (a reader, a writer without collMod) is expected: not a warning
        unauthorized = isinstance(err, OperationFailure) and err.code in (13, 8000)
        logger.log(logging.DEBUG if unauthorized else logging.WARNING,
                   "could not apply the schema validator of %s: %s", name, err)
        return False


def apply_validators(db: Database) -> dict[str, bool]:
    """Apply the validators of every xanesdb collection in ``db`` (one per schema document: the same
    collections as :data:`xanesdb.platform.stores.COLLECTIONS`, which a test keeps in step)."""
    from xanesdb.schemas import ALL_DOCUMENTS

    return {d.collection: apply_validator(db[d.collection], d.collection) for d in ALL_DOCUMENTS}


def _first_reason(details: Any) -> str:
    """The first ``reason`` (with the value considered) in a failure's details."""
    if isinstance(details, dict):
        if "reason" in details:
            value = details.get("consideredValue", details.get("consideredType"))
            seen = f" (got {value!r:.40})" if value is not None else ""
            return f"{details['reason']}{seen}"
        details = [v for v in details.values() if isinstance(v, (dict, list))]
    if isinstance(details, list):
        for d in details:
            r = _first_reason(d)
            if r != "invalid":
                return r
    return "invalid"


def _failing_fields(details: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, reason) pairs from MongoDB's ``errInfo.details`` of a validation failure."""
    if isinstance(details, dict):
        op = details.get("operatorName")
        if op == "required" and "missingProperties" in details:
            for p in details["missingProperties"]:
                yield f"{prefix}{p}", "missing"
        if op == "additionalProperties" and "additionalProperties" in details:
            for p in details["additionalProperties"]:
                yield f"{prefix}{p}", "not a field of the schema"
        if "propertyName" in details:
            name = f"{prefix}{details['propertyName']}"
            inner = list(_failing_fields(details.get("details", []), name + "."))
            if inner:
                yield from inner
            else:
                yield name, _first_reason(details.get("details", []))
            return
        for key in ("schemaRulesNotSatisfied", "propertiesNotSatisfied", "details"):
            if key in details:
                yield from _failing_fields(details[key], prefix)
    elif isinstance(details, list):
        for d in details:
            yield from _failing_fields(d, prefix)


def explain_write_error(err: PyMongoError, collection: str | None = None) -> DocumentValidationError | None:
    """A :class:`DocumentValidationError` naming the field(s), if ``err`` is a validation failure."""
    infos: list[dict] = []
    if isinstance(err, BulkWriteError):
        infos = [e for e in err.details.get("writeErrors", []) if e.get("code") == DOCUMENT_VALIDATION_FAILURE]
    elif isinstance(err, (WriteError, OperationFailure)) and err.code == DOCUMENT_VALIDATION_FAILURE:
        infos = [err.details or {}]
    if not infos:
        return None
    info = infos[0]
    err_info = info.get("errInfo") or {}
    fields = list(dict.fromkeys(f for f, _ in _failing_fields(err_info.get("details", {}))))
    reasons = dict(_failing_fields(err_info.get("details", {})))
    where = f" in {collection}" if collection else ""
    doc_id = err_info.get("failingDocumentId")
    what = ", ".join(f"{f} ({reasons[f]})" for f in fields) if fields else "unknown field"
    msg = (
        f"the database refused a document{where} (schema validation, code 121): {what}"
        f"{f'; document id {doc_id}' if doc_id is not None else ''}"
        f"{f'; {len(infos)} documents refused' if len(infos) > 1 else ''}; "
        "fix the field(s) or run `xanesdb db migrate` if the documents are old"
    )
    return DocumentValidationError(msg, fields)


@contextmanager
def translate_validation_errors(collection: str | None = None) -> Iterator[None]:
    """Turn a server-side validation failure inside the block into a :class:`DocumentValidationError`."""
    try:
        yield
    except PyMongoError as err:
        explained = explain_write_error(err, collection)
        if explained is None:
            raise
        raise explained from err


def validated_doc(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw document with its pydantic schema; the BSON-ready form (``to_mongo``).

    Raises :class:`DocumentValidationError` naming the first failing field.
    """
    from pydantic import ValidationError

    model = _model_for(collection)
    try:
        return model.from_mongo(doc).to_mongo()
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        key = doc.get(getattr(model, "key_field", ""), "?")
        raise DocumentValidationError(
            f"document {key!r} does not match the {collection} schema: {field}: {first['msg']}",
            [field],
        ) from None

#!/usr/bin/env python3
"""Stand-in of AWX's REST API (``/api/v2/``), enough for the awx.awx collection to configure Aegis.

Run it: ``python -m tests.doubles.awx --port 8052 --project-root . [--user admin --password P]`` (needs
starlette and uvicorn, and python-dateutil for schedules). Everything lives in memory.

Behaviour taken from AWX's source (awx/api/serializers.py, awx/api/views, awx/main/notifications) and from
the awx.awx collection's module_utils/controller_api.py and its test suite (awx_collection/test/awx):

- Auth: ``POST /api/v2/tokens/`` with HTTP basic auth answers ``{"id", "token"}`` (201); every other call
  needs ``Authorization: Bearer <token>`` (401 otherwise); ``DELETE /api/v2/tokens/<id>/`` revokes (204).
  Replies carry ``X-API-Product-Name: AWX`` and ``X-API-Product-Version`` (the collection's version check).
- Lists: ``{"count", "next", "previous", "results"}``, paged by ``page_size``/``page``; query parameters
  filter on equal fields, ``or__id``/``or__name`` together as the collection's name-or-id look-up does.
- Objects carry ``id``, ``type``, ``url``, ``related``, ``summary_fields``, ``created``, ``modified``; POST
  answers 201 with the object, PATCH 200, DELETE 204. Validation errors are 400 with DRF's shape
  ``{"field": ["message"]}``; the messages below are AWX's own.
- Sub-lists (``credentials``, ``notification_templates_{started,success,error}``, ``instance_groups``,
  ``labels``): GET lists, ``POST {"id"}`` associates and ``POST {"id", "disassociate": true}`` removes, 204.
  A job template takes only credentials of kind ssh, vault, cloud, net or kubernetes, one per credential
  type ("Cannot assign multiple ... credentials.").
- Credentials: inputs are checked against the type's ``inputs.fields`` (unknown and missing required
  fields refused); secret inputs read back as ``$encrypted$``; the built-in types Machine, Vault and
  Source Control exist from the start (managed). Custom credential types must be kind cloud or net.
- Notification templates: the webhook/email/slack parameters of AWX's backends, defaults filled in on
  write, "Missing required fields for Notification Configuration: [...]" when required ones are absent,
  password fields read back as ``$encrypted$`` (an ``$encrypted$`` sent back keeps the stored value).
- Job templates: ``playbook`` must be a playbook of the project (files under ``--project-root`` holding a
  play, as AWX lists a synced project's playbooks), else "Playbook not found for project."; the
  ``survey_spec`` sub-resource validates as JobTemplateSurveySpec does (name/description/spec, per-question
  type/question_name/variable/required, allowed types, duplicate variables, default types, choices) and
  answers ``{"error": ...}`` with 400; DELETE empties it (200).
- Projects: an SCM project starts a project update on create and on SCM changes, shown as
  ``summary_fields.current_update``; ``/project_updates/<id>/`` reports it ``successful`` at once.
- Schedules: ``rrule`` validated as SchedulePreviewSerializer.validate_rrule (DTSTART with TZID or Z,
  not naive, one DTSTART, RRULE present, INTERVAL required, no SECONDLY, no numeric BYDAY prefix, not
  COUNT and UNTIL, COUNT <= 999, parses with dateutil); ``next_run``, ``dtstart``, ``dtend``, ``timezone``
  and ``until`` computed from it. ``extra_data`` must be survey variables unless the template asks for
  variables on launch, and required survey questions without a default need an answer.
- ``unified_job_templates`` lists projects, inventory sources and job templates together.

Known divergences from AWX:
- No RBAC: the one user is a superuser; no teams, users, roles, activity stream or object ownership
  checks (a credential is accepted without an organization).
- Named URLs (``/api/v2/job_templates/name++org/``) are not served (404); the collection only uses them
  when a name contains ``++``.
- Nothing runs: project updates succeed at once without cloning, inventory updates and jobs are not
  implemented (``/job_templates/<id>/launch/`` answers 405); no execution environments or instance groups
  exist unless a test adds them.
- Only the fields the awx.awx modules send are modelled; other fields are stored as given without AWX's
  per-field validation (e.g. ``scm_url`` formats, ``host_filter`` syntax, injector templates).
- Credential input validation is the JSON-schema subset above (no ``format``, ``choices`` or
  ``ask_at_runtime``), and secrets are kept in clear in memory.
- Schedule extra-data wording: AWX's own messages come from its launch-config checks; the stand-in's
  messages name the same problem but are not AWX's exact text.
- ``next_run`` is computed with dateutil at request time (AWX stores it and a task refreshes it).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import itertools
import re
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VERSION = "24.6.1"
ENCRYPTED = "$encrypted$"
PLAIN_LIST_TYPES = {
    "organizations": "organization", "projects": "project", "inventories": "inventory",
    "inventory_sources": "inventory_source", "credential_types": "credential_type",
    "credentials": "credential", "notification_templates": "notification_template",
    "job_templates": "job_template", "schedules": "schedule", "execution_environments": "execution_environment",
    "instance_groups": "instance_group", "labels": "label", "project_updates": "project_update",
}
SUBLISTS = {
    "credentials": "credentials", "notification_templates_started": "notification_templates",
    "notification_templates_success": "notification_templates", "notification_templates_error": "notification_templates",
    "instance_groups": "instance_groups", "labels": "labels", "galaxy_credentials": "credentials",
}
JT_CREDENTIAL_KINDS = ("ssh", "vault", "cloud", "net", "kubernetes")
SURVEY_TYPES: dict[str, type | tuple[type, ...]] = {
    "text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": (str, list),
    "integer": int, "float": (float, int),
}
# awx/main/notifications/*_backend.py: init_parameters of the backends Aegis may use
NOTIFICATION_PARAMETERS: dict[str, dict[str, dict[str, Any]]] = {
    "webhook": {
        "url": {"type": "string"}, "http_method": {"type": "string", "default": "POST"},
        "disable_ssl_verification": {"type": "bool", "default": False},
        "username": {"type": "string", "default": ""}, "password": {"type": "password", "default": ""},
        "headers": {"type": "object"},
    },
    "email": {
        "host": {"type": "string"}, "port": {"type": "int"}, "username": {"type": "string"},
        "password": {"type": "password"}, "use_tls": {"type": "bool"}, "use_ssl": {"type": "bool"},
        "sender": {"type": "string"}, "recipients": {"type": "list"}, "timeout": {"type": "int", "default": 30},
    },
    "slack": {"channels": {"type": "list"}, "token": {"type": "password"}},
}
NOTIFICATION_TYPE_MAP = {"string": (str,), "int": (int,), "password": (str,), "list": (list,),
                         "object": (dict,), "bool": (bool,)}
MANAGED_CREDENTIAL_TYPES = [
    {"name": "Machine", "kind": "ssh", "inputs": {"fields": [
        {"id": "username", "label": "Username", "type": "string"},
        {"id": "password", "label": "Password", "type": "string", "secret": True},
        {"id": "ssh_key_data", "label": "SSH Private Key", "type": "string", "secret": True, "multiline": True},
        {"id": "ssh_public_key_data", "label": "Signed SSH Certificate", "type": "string", "multiline": True},
        {"id": "ssh_key_unlock", "label": "Private Key Passphrase", "type": "string", "secret": True},
        {"id": "become_method", "label": "Privilege Escalation Method", "type": "string"},
        {"id": "become_username", "label": "Privilege Escalation Username", "type": "string"},
        {"id": "become_password", "label": "Privilege Escalation Password", "type": "string", "secret": True},
    ]}},
    {"name": "Vault", "kind": "vault", "inputs": {"fields": [
        {"id": "vault_password", "label": "Vault Password", "type": "string", "secret": True},
        {"id": "vault_id", "label": "Vault Identifier", "type": "string"},
    ], "required": ["vault_password"]}},
    {"name": "Source Control", "kind": "scm", "inputs": {"fields": [
        {"id": "username", "label": "Username", "type": "string"},
        {"id": "password", "label": "Password", "type": "string", "secret": True},
        {"id": "ssh_key_data", "label": "SCM Private Key", "type": "string", "secret": True},
        {"id": "ssh_key_unlock", "label": "Private Key Passphrase", "type": "string", "secret": True},
    ]}},
]


class ApiError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def field_error(field: str, message: str) -> ApiError:
    return ApiError(400, {field: [message]})


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class Store:
    """The objects, by list name and id, and the many-to-many sub-lists."""

    def __init__(self, project_root: Path) -> None:
        self.project_root = project_root
        self.ids = itertools.count(1)
        self.objects: dict[str, dict[int, dict]] = {name: {} for name in PLAIN_LIST_TYPES}
        self.links: dict[tuple[str, int, str], list[int]] = {}
        self.surveys: dict[int, dict] = {}
        for managed in MANAGED_CREDENTIAL_TYPES:
            self.insert("credential_types", {**managed, "managed": True, "description": "", "injectors": {}})

    def insert(self, kind: str, fields: dict) -> dict:
        oid = next(self.ids)
        obj = {"id": oid, "created": now(), "modified": now(), **fields}
        self.objects[kind][oid] = obj
        return obj

    def get(self, kind: str, oid: int) -> dict:
        try:
            return self.objects[kind][oid]
        except KeyError:
            raise ApiError(404, {"detail": "Not found."}) from None

    def find(self, kind: str, oid: Any, field: str) -> dict:
        """A related object by id, or DRF's 'Invalid pk' error on `field`."""
        try:
            return self.objects[kind][int(oid)]
        except (KeyError, TypeError, ValueError):
            raise field_error(field, f'Invalid pk "{oid}" - object does not exist.') from None

    def linked(self, kind: str, oid: int, relation: str) -> list[int]:
        return self.links.setdefault((kind, oid, relation), [])


# --- representation -------------------------------------------------------------------------------------

def represent(store: Store, kind: str, obj: dict) -> dict:
    out = {key: value for key, value in obj.items() if not key.startswith("_")}
    out["type"] = PLAIN_LIST_TYPES[kind]
    out["url"] = f"/api/v2/{kind}/{obj['id']}/"
    out["related"] = {rel: f"{out['url']}{rel}/" for rel in RELATED.get(kind, ())}
    out["summary_fields"] = {}
    if kind == "credentials":
        ctype = store.get("credential_types", obj["credential_type"])
        secret = {f["id"] for f in ctype["inputs"].get("fields", []) if f.get("secret")}
        out["inputs"] = {k: (ENCRYPTED if k in secret and v not in ("", None) else v) for k, v in obj["inputs"].items()}
        out["kind"] = ctype["kind"]
    elif kind == "notification_templates":
        params = NOTIFICATION_PARAMETERS[obj["notification_type"]]
        out["notification_configuration"] = {
            k: (ENCRYPTED if params.get(k, {}).get("type") == "password" and v else v)
            for k, v in obj["notification_configuration"].items()}
    elif kind == "projects" and obj.get("_current_update"):
        out["summary_fields"]["current_update"] = {"id": obj["_current_update"], "status": "successful"}
        out["related"]["update"] = f"{out['url']}update/"
    elif kind == "job_templates":
        out["related"]["launch"] = f"{out['url']}launch/"
    elif kind == "schedules":
        out.update(schedule_times(obj["rrule"]))
    return out


RELATED = {
    "organizations": ("instance_groups", "galaxy_credentials", "notification_templates_started",
                      "notification_templates_success", "notification_templates_error"),
    "projects": ("notification_templates_started", "notification_templates_success", "notification_templates_error"),
    "inventories": ("instance_groups",),
    "inventory_sources": ("notification_templates_started", "notification_templates_success",
                          "notification_templates_error"),
    "job_templates": ("credentials", "labels", "instance_groups", "survey_spec", "notification_templates_started",
                      "notification_templates_success", "notification_templates_error"),
    "schedules": ("credentials", "labels", "instance_groups"),
}


# --- validation: AWX's rules for what Aegis sends ------------------------------------------------------------

DEFAULTS: dict[str, dict[str, Any]] = {
    "organizations": {"description": "", "max_hosts": 0, "custom_virtualenv": None, "default_environment": None},
    "projects": {"description": "", "scm_type": "", "scm_url": "", "scm_branch": "", "scm_refspec": "",
                 "scm_clean": False, "scm_delete_on_update": False, "scm_track_submodules": False,
                 "scm_update_on_launch": False, "scm_update_cache_timeout": 0, "allow_override": False,
                 "timeout": 0, "credential": None, "organization": None, "scm_revision": "", "local_path": ""},
    "inventories": {"description": "", "kind": "", "host_filter": None, "variables": "",
                    "prevent_instance_group_fallback": False},
    "inventory_sources": {"description": "", "source_path": "", "source_vars": "", "overwrite": False,
                          "overwrite_vars": False, "update_on_launch": False, "update_cache_timeout": 0,
                          "timeout": 0, "verbosity": 1, "source_project": None, "credential": None,
                          "enabled_var": "", "enabled_value": "", "host_filter": "", "limit": "", "scm_branch": ""},
    "credential_types": {"description": "", "inputs": {}, "injectors": {}, "managed": False},
    "credentials": {"description": "", "organization": None, "inputs": {}},
    "notification_templates": {"description": "", "messages": None, "notification_configuration": {}},
    "job_templates": {"description": "", "job_type": "run", "inventory": None, "project": None, "playbook": "",
                      "scm_branch": "", "forks": 0, "limit": "", "verbosity": 0, "extra_vars": "", "job_tags": "",
                      "force_handlers": False, "skip_tags": "", "start_at_task": "", "timeout": 0,
                      "use_fact_cache": False, "host_config_key": "", "survey_enabled": False,
                      "become_enabled": False, "diff_mode": False, "allow_simultaneous": False,
                      "job_slice_count": 1, "webhook_service": "", "execution_environment": None,
                      "prevent_instance_group_fallback": False,
                      **{f"ask_{what}_on_launch": False for what in (
                          "scm_branch", "diff_mode", "variables", "limit", "tags", "skip_tags", "job_type",
                          "verbosity", "inventory", "credential", "execution_environment", "forks",
                          "instance_groups", "job_slice_count", "labels", "timeout")}},
    "schedules": {"description": "", "enabled": True, "extra_data": {}, "inventory": None},
    "execution_environments": {"description": "", "organization": None},
    "instance_groups": {},
    "labels": {"organization": None},
}
READ_ONLY = {"id", "type", "url", "related", "summary_fields", "created", "modified", "managed",
             "next_run", "dtstart", "dtend", "timezone", "until", "scm_revision"}
WRITABLE_KIND = ("credential_types", "inventories")  # elsewhere `kind` is derived (a credential's from its type)


def require_name(kind: str, data: dict, existing: dict | None) -> None:
    name = data.get("name", existing.get("name") if existing else None)
    if not name:
        raise field_error("name", "This field may not be blank.")


def unique_name(store: Store, kind: str, data: dict, existing: dict | None, scope: str | None) -> None:
    """AWX's unique-together checks: the name within the organization (or inventory, or template)."""
    if kind == "schedules":
        scope = "unified_job_template"
    name = data.get("name", existing.get("name") if existing else None)
    scope_value = data.get(scope, existing.get(scope) if existing else None) if scope else None
    for other in store.objects[kind].values():
        if existing is not None and other["id"] == existing["id"]:
            continue
        if other.get("name") == name and (scope is None or other.get(scope) == scope_value):
            label = PLAIN_LIST_TYPES[kind].replace("_", " ").title()
            scoped = f" and {scope.replace('_', ' ').title()}" if scope else ""
            raise ApiError(400, {"__all__": [f"{label} with this Name{scoped} already exists."]})


def validate_credential_type(data: dict, existing: dict | None) -> None:
    if existing is not None and existing.get("managed"):
        raise ApiError(403, {"detail": "Modifications not allowed for managed credential types"})
    kind = data.get("kind", existing["kind"] if existing else None)
    if kind not in ("cloud", "net"):
        raise field_error("kind", f"Must be 'cloud' or 'net', not {kind}")
    for index, field in enumerate(data.get("inputs", {}).get("fields", [])):
        for key in ("id", "label"):
            if key not in field:
                raise field_error("inputs", f"'{key}' is a required property (fields.{index})")
        if field.get("type", "string") not in ("string", "boolean"):
            raise field_error("inputs", f"'{field['type']}' is not one of ['string', 'boolean'] (fields.{index})")


def validate_credential_inputs(store: Store, data: dict, existing: dict | None) -> None:
    ctype = store.find("credential_types", data.get("credential_type", existing and existing["credential_type"]),
                       "credential_type")
    fields = {f["id"]: f for f in ctype["inputs"].get("fields", [])}
    inputs = data.get("inputs", {})
    old = existing["inputs"] if existing else {}
    for key, value in list(inputs.items()):
        if key not in fields:
            raise ApiError(400, {"inputs": {key: [f"Additional properties are not allowed ('{key}' was unexpected)"]}})
        if value == ENCRYPTED:  # sent back unchanged: keep the stored secret
            inputs[key] = old.get(key, "")
    merged = inputs if "inputs" in data else old
    missing = [req for req in ctype["inputs"].get("required", []) if merged.get(req) in (None, "")]
    if missing:
        raise ApiError(400, {"inputs": {req: ["required for %s" % ctype["name"]] for req in missing}})


def validate_notification(data: dict, existing: dict | None) -> None:
    ntype = data.get("notification_type", existing and existing["notification_type"])
    if not ntype:
        raise ApiError(400, {"non_field_errors": [
            "Missing required fields for Notification Configuration: notification_type"]})
    if ntype not in NOTIFICATION_PARAMETERS:
        raise field_error("notification_type", f'"{ntype}" is not a valid choice.')
    if "notification_configuration" not in data:
        return
    config = data["notification_configuration"]
    missing, errors = [], []
    for field, params in NOTIFICATION_PARAMETERS[ntype].items():
        if field not in config:
            if "default" in params:
                config[field] = params["default"]
            else:
                missing.append(field)
            continue
        if type(config[field]) not in NOTIFICATION_TYPE_MAP[params["type"]]:
            errors.append(f"Configuration field '{field}' incorrect type, expected {params['type']}.")
        elif params["type"] == "password" and config[field] == ENCRYPTED and existing is not None:
            config[field] = existing["notification_configuration"].get(field, "")
        if field == "http_method" and str(config[field]).lower() not in ("put", "post"):
            errors.append("HTTP method must be either 'POST' or 'PUT'.")
    if missing:
        errors.insert(0, f"Missing required fields for Notification Configuration: {missing}.")
    if errors:
        raise ApiError(400, {"non_field_errors": errors})


def project_playbooks(root: Path) -> set[str]:
    """What AWX lists as a synced project's playbooks: YAML files that hold a play."""
    found = set()
    for path in root.rglob("*.yml"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or "roles" in rel.parts or "tasks" in rel.parts:
            continue
        text = path.read_text(errors="ignore")
        if re.search(r"^\s*-?\s*(hosts|import_playbook|ansible\.builtin\.import_playbook):", text, re.M):
            found.add(rel.as_posix())
    return found


def validate_job_template(store: Store, data: dict, existing: dict | None) -> None:
    merged = {**(existing or {}), **data}
    if merged.get("project") is None:
        raise field_error("project", "This field is required.")
    project = store.find("projects", merged["project"], "project")
    data["organization"] = project.get("organization")
    if merged.get("playbook") not in project_playbooks(store.project_root):
        raise field_error("playbook", "Playbook not found for project.")
    if merged.get("inventory") is None and not merged.get("ask_inventory_on_launch"):
        raise field_error("inventory", "Job Template must provide 'inventory' or allow prompting for it.")
    if merged.get("inventory") is not None:
        store.find("inventories", merged["inventory"], "inventory")


def validate_survey(new_spec: Any) -> str | None:
    """JobTemplateSurveySpec._validate_spec_data: the error message, or None when the spec is valid."""
    if not isinstance(new_spec, dict):
        return "Survey spec must be a JSON object."
    for field, expect, label in (("name", str, "string"), ("description", str, "string"), ("spec", list, "list of items")):
        if field not in new_spec:
            return f"Field '{field}' is missing from survey spec."
        if not isinstance(new_spec[field], expect):
            return f"Expected {label} for field '{field}', received {type(new_spec[field]).__name__} type."
    if not new_spec["spec"]:
        return "'spec' doesn't contain any items."
    seen: set[str] = set()
    for idx, item in enumerate(new_spec["spec"]):
        if not isinstance(item, dict):
            return f"Survey question {idx} is not a json object."
        for name in ("type", "question_name", "variable", "required"):
            if name not in item:
                return f"'{name}' missing from survey question {idx}"
            expect_type, label = (bool, "boolean") if name == "required" else (str, "string")
            if not isinstance(item[name], expect_type):
                return f"'{name}' in survey question {idx} expected to be {label}."
        if item["variable"] in seen:
            return f"'variable' '{item['variable']}' duplicated in survey question {idx}."
        seen.add(item["variable"])
        qtype = item["type"]
        if qtype not in SURVEY_TYPES:
            return (f"'{qtype}' in survey question {idx} is not one of "
                    f"'{', '.join(SURVEY_TYPES)}' allowed question types.")
        default = item.get("default", "")
        if default != "" and not isinstance(default, SURVEY_TYPES[qtype]):
            label = qtype if qtype in ("integer", "float") else "string"
            return f"Default value {default} in survey question {idx} expected to be {label}."
        for key in ("min", "max"):
            if item.get(key) is not None and not isinstance(item[key], int):
                return f"The {key} limit in survey question {idx} expected to be integer."
        if qtype in ("multiselect", "multiplechoice"):
            if "choices" not in item:
                return f"Survey question {idx} of type {qtype} must specify choices."
            choices = item["choices"] if isinstance(item["choices"], list) else item["choices"].splitlines()
            defaults = default if isinstance(default, list) else [d for d in str(default).splitlines() if d]
            if qtype == "multiplechoice" and len(defaults) > 1:
                return "Multiple Choice (Single Select) can only have one default value."
            if any(d not in choices for d in defaults):
                return "Default choice must be answered from the choices listed."
    return None


RRULE_NUMERIC_BYDAY = re.compile(r".*?BYDAY[\:\=][0-9]+[a-zA-Z]{2}")


def parse_rrule(value: str):
    from dateutil import rrule as du_rrule

    return du_rrule.rrulestr(value.replace(" ", "\n"), forceset=True)


def validate_rrule(value: str) -> None:
    """SchedulePreviewSerializer.validate_rrule, message for message."""
    errors = []
    dtstarts = re.findall(r".*?(DTSTART(;[^:]+)?\:[0-9]+T[0-9]+Z?)", value)
    rules = re.findall(r".*?(RULE\:[^\s]*)", value)
    if not dtstarts:
        errors.append("Valid DTSTART required in rrule. Value should start with: DTSTART:YYYYMMDDTHHMMSSZ")
    if re.findall(r".*?(DTSTART:[0-9]+T[0-9]+) ", value):
        errors.append("DTSTART cannot be a naive datetime.  Specify ;TZINFO= or YYYYMMDDTHHMMSSZZ.")
    if len(dtstarts) > 1:
        errors.append("Multiple DTSTART is not supported.")
    if "rrule:" not in value.lower():
        errors.append("One or more rule required in rrule.")
    for forbidden in ("exdate", "rdate"):
        if f"{forbidden}:" in value.lower():
            raise field_error("rrule", f"{forbidden.upper()} not allowed in rrule.")
    for rule in rules:
        if "interval" not in rule.lower():
            errors.append(f"INTERVAL required in rrule: {rule}")
        elif "secondly" in rule.lower():
            errors.append(f"SECONDLY is not supported: {rule}")
        if RRULE_NUMERIC_BYDAY.match(rule):
            errors.append(f"BYDAY with numeric prefix not supported: {rule}")
        if "COUNT" in rule and "UNTIL" in rule:
            errors.append(f"RRULE may not contain both COUNT and UNTIL: {rule}")
        count = re.match(r".*?(COUNT\=[0-9]+)", rule)
        if count and int(count.group(1).split("=")[1]) > 999:
            errors.append(f"COUNT > 999 is unsupported: {rule}")
    try:
        parse_rrule(value)
    except Exception as exc:  # dateutil raises ValueError and friends
        errors.append(f"rrule parsing failed validation: {exc}")
    if errors:
        raise ApiError(400, {"rrule": errors})


def schedule_times(rrule_value: str) -> dict:
    ruleset = parse_rrule(rrule_value)
    first = next(iter(ruleset), None)
    upcoming = ruleset.after(dt.datetime.now(dt.timezone.utc))
    tzid = re.search(r"DTSTART;TZID=([^:]+):", rrule_value)

    def iso(moment):
        return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if moment else None

    until = re.search(r"UNTIL=([0-9T]+Z?)", rrule_value)
    return {"dtstart": iso(first), "next_run": iso(upcoming), "dtend": None,
            "timezone": tzid.group(1) if tzid else "UTC", "until": until.group(1) if until else ""}


def validate_schedule(store: Store, data: dict, existing: dict | None) -> None:
    merged = {**(existing or {}), **data}
    if merged.get("rrule") in (None, ""):
        raise field_error("rrule", "This field is required.")
    validate_rrule(merged["rrule"])
    ujt_id = merged.get("unified_job_template")
    if ujt_id is None:
        raise field_error("unified_job_template", "This field is required.")
    template = unified_templates(store).get(int(ujt_id))
    if template is None:
        raise field_error("unified_job_template", f'Invalid pk "{ujt_id}" - object does not exist.')
    kind, jt = template
    extra = merged.get("extra_data") or {}
    if kind != "job_templates":
        if extra:
            raise field_error("extra_data", "Variables are not accepted by this template.")
        return
    survey = store.surveys.get(jt["id"], {}) if jt.get("survey_enabled") else {}
    questions = {q["variable"]: q for q in survey.get("spec", [])}
    unknown = sorted(set(extra) - set(questions))
    if unknown and not jt.get("ask_variables_on_launch"):
        raise field_error("extra_data", f"Variables {', '.join(unknown)} provided, but this template cannot accept them.")
    missing = [v for v, q in questions.items() if q.get("required") and q.get("default") in (None, "") and v not in extra]
    if missing:
        raise ApiError(400, {"variables_needed_to_start": [f"'{v}' value missing" for v in missing]})


def unified_templates(store: Store) -> dict[int, tuple[str, dict]]:
    return {obj["id"]: (kind, obj) for kind in ("projects", "inventory_sources", "job_templates")
            for obj in store.objects[kind].values()}


SCOPES = {"projects": "organization", "inventories": "organization", "credentials": "organization",
          "notification_templates": "organization", "job_templates": "organization",
          "inventory_sources": "inventory", "labels": "organization"}


def validate(store: Store, kind: str, data: dict, existing: dict | None) -> None:
    require_name(kind, data, existing)
    for field in READ_ONLY & set(data) | ({"kind"} & set(data) if kind not in WRITABLE_KIND else set()):
        data.pop(field)
    if kind == "credential_types":
        validate_credential_type(data, existing)
    elif kind == "credentials":
        validate_credential_inputs(store, data, existing)
    elif kind == "notification_templates":
        validate_notification(data, existing)
        if (data.get("organization") or (existing or {}).get("organization")) is None:
            raise field_error("organization", "This field may not be null.")
    elif kind == "job_templates":
        validate_job_template(store, data, existing)
    elif kind == "schedules":
        validate_schedule(store, data, existing)
    elif kind == "inventory_sources":
        merged = {**(existing or {}), **data}
        if merged.get("source") == "scm" and merged.get("source_project") is None:
            raise field_error("source_project", "Project required for scm type sources.")
    elif kind == "inventories":
        if "kind" in data and data["kind"] is None:  # the inventory module always sends kind; AWX takes null
            data["kind"] = ""
        if data.get("kind") not in (None, "", "smart", "constructed"):
            raise field_error("kind", f'"{data["kind"]}" is not a valid choice.')
    for field in ("organization", "project", "inventory", "credential", "source_project"):
        target = {"project": "projects", "source_project": "projects", "inventory": "inventories",
                  "credential": "credentials", "organization": "organizations"}[field]
        if data.get(field) is not None:
            store.find(target, data[field], field)
    unique_name(store, kind, data, existing, SCOPES.get(kind))


# --- the API -------------------------------------------------------------------------------------------------

def paged(request: Request, items: list[dict]) -> dict:
    size = int(request.query_params.get("page_size", 25))
    page = int(request.query_params.get("page", 1))
    start = (page - 1) * size
    more = start + size < len(items)
    base = request.url.path
    return {"count": len(items), "next": f"{base}?page={page + 1}&page_size={size}" if more else None,
            "previous": f"{base}?page={page - 1}&page_size={size}" if page > 1 else None,
            "results": items[start:start + size]}


def matches(obj: dict, params: dict[str, str]) -> bool:
    """Equality filters; or__id / or__name (the collection's name-or-id look-up) match either."""
    ors = {k[4:]: v for k, v in params.items() if k.startswith("or__")}
    if ors and not any(str(obj.get(k)) == v for k, v in ors.items()):
        return False
    for key, value in params.items():
        if key.startswith("or__") or key in ("page", "page_size", "order_by"):
            continue
        actual = obj.get(key)
        if value in ("None", "") and actual in (None, ""):
            continue
        if str(actual) != value and not (isinstance(actual, bool) and str(actual).lower() == value.lower()):
            return False
    return True


class AwxStandIn:
    def __init__(self, project_root: Path, user: str, password: str) -> None:
        self.store = Store(project_root)
        self.user, self.password = user, password
        self.tokens: dict[str, int] = {}

    # auth
    def basic_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user, password) == (self.user, self.password)

    def bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.lower().startswith("bearer ") and header[7:] in self.tokens

    async def dispatch(self, request: Request) -> Response:
        try:
            status, body = await self.route(request)
        except ApiError as err:
            status, body = err.status, err.body
        headers = {"X-API-Product-Name": "AWX", "X-API-Product-Version": VERSION}
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    async def route(self, request: Request) -> tuple[int, Any]:
        parts = [p for p in request.url.path.split("/") if p][2:]  # after api/v2
        method = request.method
        body = await request.json() if method in ("POST", "PATCH", "PUT") and await request.body() else {}
        if parts[:1] == ["tokens"]:
            return self.token_call(request, method, parts)
        if not self.bearer_ok(request):
            raise ApiError(401, {"detail": "Authentication credentials were not provided."})
        if not parts:
            return 200, {name: f"/api/v2/{name}/" for name in PLAIN_LIST_TYPES}
        if parts[0] in ("ping", "me", "config"):
            return 200, {"version": VERSION, "ha": False, "active_node": "awx-stand-in"}
        if parts[0] == "unified_job_templates" and method == "GET":
            items = [represent(self.store, kind, obj) for kind, obj in unified_templates(self.store).values()]
            return 200, paged(request, [i for i in items if matches(i, dict(request.query_params))])
        kind = parts[0]
        if kind not in PLAIN_LIST_TYPES:
            raise ApiError(404, {"detail": "Not found."})
        if len(parts) == 1:
            return self.list_call(request, kind, method, body)
        oid = int(parts[1]) if parts[1].isdigit() else None
        if oid is None:
            raise ApiError(404, {"detail": "Not found."})  # named URLs: not served (see the docstring)
        if len(parts) == 2:
            return self.detail_call(kind, oid, method, body)
        return self.sub_call(request, kind, oid, parts[2], method, body)

    def token_call(self, request: Request, method: str, parts: list[str]) -> tuple[int, Any]:
        if not self.basic_ok(request):
            raise ApiError(401, {"detail": "Invalid username/password."})
        if method == "POST" and len(parts) == 1:
            token, oid = secrets.token_hex(16), next(self.store.ids)
            self.tokens[token] = oid
            return 201, {"id": oid, "token": token, "type": "o_auth2_access_token", "scope": "write"}
        if method == "DELETE" and len(parts) == 2:
            self.tokens = {t: i for t, i in self.tokens.items() if str(i) != parts[1]}
            return 204, None
        raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})

    def list_call(self, request: Request, kind: str, method: str, body: dict) -> tuple[int, Any]:
        if method == "GET":
            items = [represent(self.store, kind, o) for o in self.store.objects[kind].values()]
            return 200, paged(request, [i for i in items if matches(i, dict(request.query_params))])
        if method != "POST" or kind == "project_updates":
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
        validate(self.store, kind, body, None)
        obj = self.store.insert(kind, {**DEFAULTS[kind], **body})
        self.after_write(kind, obj, set(body))
        return 201, represent(self.store, kind, obj)

    def detail_call(self, kind: str, oid: int, method: str, body: dict) -> tuple[int, Any]:
        obj = self.store.get(kind, oid)
        if method == "GET":
            return 200, represent(self.store, kind, obj)
        if method in ("PATCH", "PUT"):
            validate(self.store, kind, body, obj)
            changed = {k for k, v in body.items() if obj.get(k) != v}
            obj.update(body)
            if changed:
                obj["modified"] = now()
            self.after_write(kind, obj, changed)
            return 200, represent(self.store, kind, obj)
        if method == "DELETE":
            del self.store.objects[kind][oid]
            return 204, None
        raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})

    def after_write(self, kind: str, obj: dict, changed: set[str]) -> None:
        """An SCM project syncs when created or when its source changes (a project update, done at once)."""
        obj.pop("_current_update", None)
        if kind == "projects" and obj.get("scm_type") and changed & {"scm_type", "scm_url", "scm_branch", "name"}:
            update = self.store.insert("project_updates", {"name": obj["name"], "project": obj["id"],
                                                           "status": "successful", "failed": False,
                                                           "finished": now(), "scm_revision": "0" * 40})
            obj["_current_update"] = update["id"]
            obj["scm_revision"] = "0" * 40

    def sub_call(self, request: Request, kind: str, oid: int, relation: str, method: str, body: Any) -> tuple[int, Any]:
        obj = self.store.get(kind, oid)
        if relation == "survey_spec" and kind == "job_templates":
            return self.survey_call(obj, method, body)
        if relation == "launch":
            raise ApiError(405, {"detail": "Launching jobs is not implemented by the stand-in."})
        target = SUBLISTS.get(relation)
        if target is None or relation not in RELATED.get(kind, ()):
            raise ApiError(404, {"detail": "Not found."})
        ids = self.store.linked(kind, oid, relation)
        if method == "GET":
            return 200, paged(request, [represent(self.store, target, self.store.get(target, i)) for i in ids])
        if method != "POST":
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})
        sub = self.store.find(target, body.get("id"), "id")
        if body.get("disassociate"):
            if sub["id"] in ids:
                ids.remove(sub["id"])
            return 204, None
        if kind == "job_templates" and relation == "credentials":
            self.check_jt_credential(ids, sub)
        if sub["id"] not in ids:
            ids.append(sub["id"])
        return 204, None

    def check_jt_credential(self, ids: list[int], credential: dict) -> None:
        ctype = self.store.get("credential_types", credential["credential_type"])
        if ctype["kind"] not in JT_CREDENTIAL_KINDS:
            raise ApiError(400, {"error": f"Cannot assign a Credential of kind `{ctype['kind']}`."})
        for other in ids:
            if self.store.get("credentials", other)["credential_type"] == credential["credential_type"] \
                    and other != credential["id"]:
                raise ApiError(400, {"error": f"Cannot assign multiple {ctype['name']} credentials."})

    def survey_call(self, jt: dict, method: str, body: Any) -> tuple[int, Any]:
        if method == "GET":
            return 200, self.store.surveys.get(jt["id"], {})
        if method == "DELETE":
            self.store.surveys.pop(jt["id"], None)
            return 200, {}
        if method == "POST":
            error = validate_survey(body)
            if error:
                raise ApiError(400, {"error": error})
            self.store.surveys[jt["id"]] = body
            return 200, {}
        raise ApiError(405, {"detail": f'Method "{method}" not allowed.'})

    # helpers for tests
    def find(self, kind: str, **filters: Any) -> list[dict]:
        return [represent(self.store, kind, o) for o in self.store.objects[kind].values()
                if all(o.get(k) == v for k, v in filters.items())]


def build_app(project_root: Path, user: str = "admin", password: str = "password") -> Starlette:
    standin = AwxStandIn(project_root, user, password)
    app = Starlette(routes=[Route("/api/{path:path}", standin.dispatch,
                                  methods=["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"])])
    app.state.standin = standin
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8052)
    parser.add_argument("--project-root", type=Path, default=Path.cwd())
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="password")
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.project_root, args.user, args.password), host=args.host, port=args.port,
                log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()

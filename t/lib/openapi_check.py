#!/usr/bin/python3
"""Checks an OpenAPI 3.1 document, and HTTP answers against it.

Debian's python3-jsonschema (4.10, JSON Schema 2020-12) does the schema
work; the OpenAPI structure is checked here, for the parts of OpenAPI
3.1 a document may use (no external $ref, no callbacks or links).

    openapi_check.py DOC                 check the document; problems on
                                         stdout, exit 1 if any
    openapi_check.py DOC --serve         one JSON request per line on
                                         stdin, one JSON answer per line

Requests of --serve:

    {"op": "document"}
    {"op": "response", "method": "GET", "path": "/api/.../card",
     "template": "/api/internet-orders/{topupId}/card" (optional),
     "status": 200, "headers": [[name, value], ...],
     "body_b64": "..."}

Answers: {"problems": [text, ...], "operation": ID, "response": KEY}
(operation and response when found), or {"error": text} for a request
that cannot be understood.
"""

import base64
import json
import re
import sys

try:
    import jsonschema
    from jsonschema import Draft202012Validator
except ImportError:                                   # pragma: no cover
    print(json.dumps({"error": "python3-jsonschema is not installed"}))
    sys.exit(3)


DIALECT = "https://json-schema.org/draft/2020-12/schema"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch",
           "trace")
STATUS_KEY = re.compile(r"^([1-5][0-9]{2}|[1-5]XX|default)$")
PARAM_IN = ("query", "header", "path", "cookie")
SCHEME_TYPES = ("apiKey", "http", "mutualTLS", "oauth2", "openIdConnect")

# Headers the module sets itself: one that an answer carries must be
# documented for that answer, so the document cannot fall behind.
OWN_HEADER = re.compile(r"^(cache-control|pragma|x-content-type-options|vary"
                        r"|www-authenticate|retry-after|allow"
                        r"|access-control-[a-z-]+)$")


class Document:

    def __init__(self, doc):
        self.doc = doc
        self.resolver = jsonschema.RefResolver("", doc)

    # --- $ref ---------------------------------------------------------------

    def pointer(self, ref):
        """The object a local $ref names, or None."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node = self.doc
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() \
                    and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def deref(self, obj, where, problems):
        """An OpenAPI object, following Reference Objects (not schemas)."""
        seen = set()
        while isinstance(obj, dict) and "$ref" in obj:
            ref = obj["$ref"]
            if ref in seen:
                problems.append(f"{where}: $ref loop at {ref}")
                return None
            seen.add(ref)
            target = self.pointer(ref)
            if target is None:
                problems.append(f"{where}: $ref {ref!r} does not resolve")
                return None
            obj = target
        return obj

    # --- the document ---------------------------------------------------------

    def check(self):
        p = []
        d = self.doc

        if not isinstance(d, dict):
            return ["the document is not a JSON object"]

        if not re.match(r"^3\.1\.\d+$", str(d.get("openapi", ""))):
            p.append("openapi: must be 3.1.x, is %r" % d.get("openapi"))

        info = d.get("info")
        if not isinstance(info, dict):
            p.append("info: missing")
        else:
            for k in ("title", "version"):
                if not isinstance(info.get(k), str) or not info[k]:
                    p.append(f"info.{k}: missing or not a string")

        if d.get("jsonSchemaDialect", DIALECT) != DIALECT:
            p.append("jsonSchemaDialect: must be JSON Schema 2020-12")

        unknown = set(d) - {"openapi", "info", "jsonSchemaDialect", "servers",
                            "paths", "webhooks", "components", "security",
                            "tags", "externalDocs"}
        unknown = {k for k in unknown if not k.startswith("x-")}
        if unknown:
            p.append("unknown top-level fields: %s" % ", ".join(sorted(unknown)))

        if not isinstance(d.get("paths"), dict) or not d["paths"]:
            p.append("paths: missing or empty")

        self._check_refs(d, "#", p)
        self._check_schemes(p)
        self._check_security(d.get("security"), "security", p)

        op_ids = {}
        for path, item in (d.get("paths") or {}).items():
            where = f"paths.{path}"
            if not path.startswith("/"):
                p.append(f"{where}: a path starts with /")
            item = self.deref(item, where, p)
            if not isinstance(item, dict):
                continue
            vars_ = re.findall(r"\{([^}/]+)\}", path)
            common = self._check_params(item.get("parameters", []),
                                        where, p)
            ops = [m for m in METHODS if m in item]
            if not ops:
                p.append(f"{where}: no operation")
            for m in ops:
                op = item[m]
                ow = f"{where}.{m}"
                oid = op.get("operationId")
                if not isinstance(oid, str):
                    p.append(f"{ow}: no operationId")
                elif oid in op_ids:
                    p.append(f"{ow}: operationId {oid} also at {op_ids[oid]}")
                else:
                    op_ids[oid] = ow
                params = dict(common)
                params.update(self._check_params(op.get("parameters", []),
                                                 ow, p))
                for v in vars_:
                    if (v, "path") not in params:
                        p.append(f"{ow}: no path parameter for {{{v}}}")
                for (name, where_in) in params:
                    if where_in == "path" and name not in vars_:
                        p.append(f"{ow}: path parameter {name} is not in "
                                 f"the path")
                self._check_security(op.get("security"), f"{ow}.security",
                                     p)
                self._check_responses(op.get("responses"), m, ow, p)

        for kind in ("schemas", "responses", "parameters", "headers",
                     "securitySchemes"):
            comp = (d.get("components") or {}).get(kind)
            if comp is not None and not isinstance(comp, dict):
                p.append(f"components.{kind}: not an object")

        self._check_schemas(p)
        return p

    def _check_refs(self, node, where, p):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith("#/"):
                    p.append(f"{where}: only local $ref are used here: {ref}")
                elif self.pointer(ref) is None:
                    p.append(f"{where}: $ref {ref} does not resolve")
            for k, v in node.items():
                self._check_refs(v, f"{where}/{k}", p)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._check_refs(v, f"{where}/{i}", p)

    def _check_schemes(self, p):
        schemes = (self.doc.get("components") or {}).get("securitySchemes",
                                                          {})
        for name, s in schemes.items():
            w = f"components.securitySchemes.{name}"
            s = self.deref(s, w, p)
            if not isinstance(s, dict):
                continue
            t = s.get("type")
            if t not in SCHEME_TYPES:
                p.append(f"{w}: type {t!r} unknown")
            if t == "apiKey":
                if s.get("in") not in ("query", "header", "cookie"):
                    p.append(f"{w}: apiKey needs in query, header or cookie")
                if not isinstance(s.get("name"), str):
                    p.append(f"{w}: apiKey needs a name")
            if t == "http" and not isinstance(s.get("scheme"), str):
                p.append(f"{w}: http needs a scheme")

    def _check_security(self, sec, where, p):
        if sec is None:
            return
        schemes = (self.doc.get("components") or {}).get("securitySchemes",
                                                          {})
        if not isinstance(sec, list):
            p.append(f"{where}: not an array")
            return
        for req in sec:
            if not isinstance(req, dict):
                p.append(f"{where}: a requirement is not an object")
                continue
            for name in req:
                if name not in schemes:
                    p.append(f"{where}: no security scheme {name}")

    def _check_params(self, params, where, p):
        out = {}
        if not isinstance(params, list):
            p.append(f"{where}.parameters: not an array")
            return out
        for i, prm in enumerate(params):
            w = f"{where}.parameters[{i}]"
            prm = self.deref(prm, w, p)
            if not isinstance(prm, dict):
                continue
            name, loc = prm.get("name"), prm.get("in")
            if not isinstance(name, str) or loc not in PARAM_IN:
                p.append(f"{w}: needs a name and in ({', '.join(PARAM_IN)})")
                continue
            if loc == "path" and prm.get("required") is not True:
                p.append(f"{w}: path parameters are required")
            if ("schema" in prm) == ("content" in prm):
                p.append(f"{w}: exactly one of schema and content")
            if (name, loc) in out:
                p.append(f"{w}: {loc} parameter {name} twice")
            out[(name, loc)] = prm
        return out

    def _check_responses(self, responses, method, where, p):
        if not isinstance(responses, dict) or not responses:
            p.append(f"{where}.responses: missing or empty")
            return
        for key, resp in responses.items():
            w = f"{where}.responses.{key}"
            if not STATUS_KEY.match(str(key)):
                p.append(f"{w}: not a status code, NXX or default")
            resp = self.deref(resp, w, p)
            if not isinstance(resp, dict):
                continue
            if not isinstance(resp.get("description"), str):
                p.append(f"{w}: no description")
            for hname, h in (resp.get("headers") or {}).items():
                hw = f"{w}.headers.{hname}"
                if hname.lower() == "content-type":
                    p.append(f"{hw}: Content-Type is described by content")
                h = self.deref(h, hw, p)
                if not isinstance(h, dict):
                    continue
                if "name" in h or "in" in h:
                    p.append(f"{hw}: a header has no name or in")
                if ("schema" in h) == ("content" in h):
                    p.append(f"{hw}: exactly one of schema and content")
            for mt, media in (resp.get("content") or {}).items():
                mw = f"{w}.content.{mt}"
                if not re.match(r"^[\w.+*-]+/[\w.+*-]+$", mt):
                    p.append(f"{mw}: not a media type")
                if not isinstance(media, dict) or "schema" not in media:
                    p.append(f"{mw}: no schema")
                    continue
                examples = []
                if "example" in media:
                    examples.append(("example", media["example"]))
                for n, ex in (media.get("examples") or {}).items():
                    ex = self.deref(ex, f"{mw}.examples.{n}", p)
                    if isinstance(ex, dict) and "value" in ex:
                        examples.append((f"examples.{n}", ex["value"]))
                for n, value in examples:
                    for e in self.validate(media["schema"], value):
                        p.append(f"{mw}.{n}: {e}")
            if str(key) == "204" and resp.get("content"):
                p.append(f"{w}: a 204 has no content")

    def _schemas(self):
        """Every Schema Object of the document: (where, schema)."""
        d = self.doc
        for name, s in ((d.get("components") or {}).get("schemas") or
                        {}).items():
            yield f"components.schemas.{name}", s

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "schema" and isinstance(v, (dict, bool)):
                        yield f"{where}.schema", v
                    elif k not in ("example", "examples", "schemas"):
                        yield from walk(v, f"{where}.{k}")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    yield from walk(v, f"{where}[{i}]")

        yield from walk({k: v for k, v in d.items() if k != "components"}, "")
        comps = {k: v for k, v in (d.get("components") or {}).items()
                 if k != "schemas"}
        yield from walk(comps, "components")

    def _check_schemas(self, p):
        for where, s in self._schemas():
            if isinstance(s, dict) and s.get("$schema", DIALECT) != DIALECT:
                p.append(f"{where}: $schema is not 2020-12")
            try:
                Draft202012Validator.check_schema(s)
            except jsonschema.exceptions.SchemaError as e:
                p.append(f"{where}: not a valid 2020-12 schema: {e.message}")

    # --- answers ------------------------------------------------------------

    def validate(self, schema, value):
        v = Draft202012Validator(schema, resolver=self.resolver)
        out = []
        try:
            errors = sorted(v.iter_errors(value), key=lambda e: list(e.path))
        except (jsonschema.exceptions.RefResolutionError,
                jsonschema.exceptions.UnknownType,
                jsonschema.exceptions.SchemaError) as e:
            # a broken schema: reported by the document check
            return [f"body: the schema cannot be used: "
                    f"{str(e).splitlines()[0]}"]
        for e in errors:
            at = "/".join(str(x) for x in e.path)
            out.append(f"{'/' + at if at else 'body'}: {e.message}")
        return out

    def find_operation(self, method, path, template):
        paths = self.doc.get("paths") or {}
        if template is None:
            for t in paths:
                rx = "^" + re.sub(r"\\\{[^}/]+\\\}", "[^/]+",
                                  re.escape(t)) + "$"
                if re.match(rx, path or ""):
                    template = t
                    break
        if template is None:
            return None, None, f"no path of the document matches {path}"
        item = paths.get(template)
        if item is None:
            return None, None, f"no path {template} in the document"
        item = self.deref(item, template, [])
        op = item.get(method.lower()) if isinstance(item, dict) else None
        if op is None:
            return None, None, f"{method} {template}: not in the document"
        return template, op, None

    def check_response(self, req):
        p = []
        method = str(req.get("method", "GET")).upper()
        status = int(req.get("status", 0))
        template, op, err = self.find_operation(method, req.get("path"),
                                                req.get("template"))
        if err:
            return {"problems": [err]}

        responses = op.get("responses") or {}
        key = None
        for k in (str(status), f"{str(status)[0]}XX", "default"):
            if k in responses:
                key = k
                break
        oid = op.get("operationId")
        if key is None:
            return {"problems": [f"{oid}: status {status} is not documented"],
                    "operation": oid}
        resp = self.deref(responses[key], f"{oid} {key}", p)
        if resp is None:
            return {"problems": p, "operation": oid, "response": key}

        # headers: [[name, value], ...] as received
        got = {}
        for name, value in req.get("headers") or []:
            got.setdefault(name.lower(), []).append(value)

        documented = {}
        for hname, h in (resp.get("headers") or {}).items():
            h = self.deref(h, f"{oid} {key} {hname}", p)
            if h is None:
                continue
            documented[hname.lower()] = h
            values = got.get(hname.lower())
            if not values:
                if h.get("required"):
                    p.append(f"header {hname}: missing")
                continue
            if len(values) > 1:
                p.append(f"header {hname}: sent {len(values)} times")
            if "schema" in h:
                for e in self.validate(h["schema"], values[0]):
                    p.append(f"header {hname}: {e.split(': ', 1)[1]}"
                             f" (value {values[0]!r})")

        for name in sorted(got):
            if OWN_HEADER.match(name) and name not in documented:
                p.append(f"header {name}: sent but not documented for "
                         f"{oid} {key}")

        # the body
        try:
            body = base64.b64decode(req.get("body_b64") or "")
        except ValueError:
            return {"error": "body_b64 is not base64"}

        content = resp.get("content") or {}
        ctype = (got.get("content-type") or [""])[0]
        media = ctype.split(";")[0].strip().lower()

        if media and content and not self._media_match(media, content):
            p.append(f"Content-Type {ctype!r}: not one of "
                     f"{', '.join(content)}")

        if method == "HEAD" or not content:
            if body:
                p.append(f"a body of {len(body)} bytes where none is "
                         f"documented" + (" (HEAD)" if method == "HEAD"
                                          else ""))
            return {"problems": p, "operation": oid, "response": key}

        if not media:
            p.append("no Content-Type for a documented body")
            return {"problems": p, "operation": oid, "response": key}

        mt = self._media_match(media, content)
        if mt is None:
            return {"problems": p, "operation": oid, "response": key}

        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            p.append("the body is not UTF-8")
            return {"problems": p, "operation": oid, "response": key}

        if media == "application/json" or media.endswith("+json"):
            try:
                value = json.loads(text)
            except ValueError as e:
                p.append(f"the body is not JSON: {e}")
                return {"problems": p, "operation": oid, "response": key}
        else:
            value = text

        p.extend(self.validate(content[mt]["schema"], value))
        return {"problems": p, "operation": oid, "response": key}

    @staticmethod
    def _media_match(media, content):
        for mt in content:
            m = mt.lower()
            if m == media or m == "*/*" \
                    or (m.endswith("/*") and media.startswith(m[:-1])):
                return mt
        return None


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            doc = Document(json.load(f))
    except (OSError, ValueError) as e:
        print(json.dumps({"error": f"{argv[1]}: {e}"}))
        return 1

    if argv[2:] != ["--serve"]:
        problems = doc.check()
        for line in problems:
            print(line)
        return 1 if problems else 0

    for line in sys.stdin:
        try:
            req = json.loads(line)
            if req.get("op") == "document":
                answer = {"problems": doc.check()}
            elif req.get("op") == "response":
                answer = doc.check_response(req)
            else:
                answer = {"error": f"unknown op {req.get('op')!r}"}
        except Exception as e:                        # report, keep serving
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The serverless templates: the Bicep (for azd) and the hand-written ARM JSON (for the portal's
custom deployment) must declare the same resources, parameters, outputs and app settings.

No Bicep compiler can be installed here (no registry package ships the Bicep CLI), so both files are
read by the small evaluators below: enough of Bicep (params, vars, resources with their name, parent,
scope and condition; string interpolation, member access, a few functions) and of ARM template
expressions to compute every resource's full name, scope and condition, and the app settings, for
each plan type. Values only known in Azure (reference(), listKeys(), ...) stay symbolic.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP = INFRA / "serverless" / "function-app.bicep"
ARM = INFRA / "serverless" / "azuredeploy.json"


# --- a tokenizer for both expression languages ------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>==|!=|&&|\|\||[()\[\],.!?:])|(?P<str>'))")


class Opaque(str):
    """A value known only at deployment time, kept as its expression text."""


def _read_string(text: str, i: int, bicep: bool) -> tuple[list, int]:
    """Read a quoted string starting after its opening quote: a list of literal parts and ('expr', text)."""
    parts, buf = [], []
    while i < len(text):
        c = text[i]
        if bicep and c == "\\":
            buf.append(text[i + 1])
            i += 2
            continue
        if c == "'":
            if not bicep and text[i + 1:i + 2] == "'":
                buf.append("'")
                i += 2
                continue
            parts.append("".join(buf))
            return parts, i + 1
        if bicep and text.startswith("${", i):
            parts.append("".join(buf))
            buf = []
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            parts.append(("expr", text[i + 2:j - 1]))
            i = j
            continue
        buf.append(c)
        i += 1
    raise ValueError(f"unterminated string in {text!r}")


def tokenize(text: str, bicep: bool) -> list:
    tokens, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if not m:
            raise ValueError(f"cannot read {text[i:]!r}")
        i = m.end()
        if m.group("str"):
            parts, i = _read_string(text, i, bicep)
            tokens.append(("str", parts))
        elif m.group("num"):
            tokens.append(("num", int(m.group("num"))))
        elif m.group("name"):
            tokens.append(("name", m.group("name")))
        else:
            tokens.append(("op", m.group("op")))
    return tokens


class Parser:
    """Expression trees: ('str', parts) ('num', n) ('name', x) ('call', f, args) ('member', obj, prop)
    ('index', obj, idx) ('not', x) ('eq', a, b) ('ternary', c, a, b)."""

    def __init__(self, tokens):
        self.tokens, self.i = tokens, 0

    def peek(self, value=None):
        if self.i >= len(self.tokens):
            return None
        tok = self.tokens[self.i]
        return tok if value is None or tok == ("op", value) else None

    def take(self, value=None):
        tok = self.peek(value)
        if tok is None:
            raise ValueError(f"expected {value!r} at {self.tokens[self.i:]}")
        self.i += 1
        return tok

    def parse(self):
        tree = self.ternary()
        if self.i != len(self.tokens):
            raise ValueError(f"unread tokens {self.tokens[self.i:]}")
        return tree

    def ternary(self):
        cond = self.equality()
        if self.peek("?"):
            self.take("?")
            a = self.ternary()
            self.take(":")
            return ("ternary", cond, a, self.ternary())
        return cond

    def equality(self):
        left = self.unary()
        while self.peek("==") or self.peek("!="):
            op = self.take()[1]
            right = self.unary()
            left = ("eq", left, right) if op == "==" else ("not", ("eq", left, right))
        return left

    def unary(self):
        if self.peek("!"):
            self.take("!")
            return ("not", self.unary())
        return self.postfix()

    def postfix(self):
        tok = self.take()
        if tok[0] in ("str", "num"):
            node = tok
        elif tok[0] == "name" and self.peek("("):
            self.take("(")
            args = []
            while not self.peek(")"):
                args.append(self.ternary())
                if self.peek(","):
                    self.take(",")
            self.take(")")
            node = ("call", tok[1], args)
        elif tok[0] == "name":
            node = tok
        elif tok == ("op", "("):
            node = self.ternary()
            self.take(")")
        else:
            raise ValueError(f"unexpected {tok}")
        while self.peek(".") or self.peek("["):
            if self.take()[1] == ".":
                prop = self.take()[1]
                if self.peek("("):  # a method such as listKeys()
                    self.take("(")
                    self.take(")")
                    node = ("call", prop, [node])
                else:
                    node = ("member", node, prop)
            else:
                idx = self.ternary()
                self.take("]")
                node = ("index", node, idx)
        return node


def parse(text: str, bicep: bool):
    return Parser(tokenize(text, bicep)).parse()


def canonical_id(rtype: str, full_name: str) -> str:
    """'Microsoft.Storage/storageAccounts/blobServices', 'a/default' -> 'Microsoft.Storage/storageAccounts/a/blobServices/default'."""
    segments = rtype.split("/")
    names = full_name.split("/")
    assert len(segments) - 1 == len(names), (rtype, full_name)
    out = [segments[0]]
    for seg, name in zip(segments[1:], names):
        out += [seg, name]
    return "/".join(out)


def _render(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_render(v) for v in value) + "]"
    return str(value)


class Evaluator:
    """Shared semantics; subclasses resolve names (Bicep) or parameters()/variables() (ARM)."""

    bicep = True

    def eval(self, node):
        kind = node[0]
        if kind == "str":
            values = [p if isinstance(p, str) else self.eval(parse(p[1], True)) for p in node[1]]
            joined = "".join(_render(v) for v in values)
            return Opaque(joined) if any(isinstance(v, Opaque) for v in values) else joined
        if kind == "num":
            return node[1]
        if kind == "not":
            return not self.eval(node[1])
        if kind == "eq":
            return self.eval(node[1]) == self.eval(node[2])
        if kind == "ternary":
            return self.eval(node[2]) if self.eval(node[1]) else self.eval(node[3])
        if kind == "name":
            return self.name(node[1])
        if kind == "member":
            return self.member(self.eval(node[1]), node[2], node[1])
        if kind == "index":
            return Opaque(f"{_render(self.eval(node[1]))}[{_render(self.eval(node[2]))}]")
        if kind == "call":
            return self.call(node[1], node[2])
        raise ValueError(node)

    def member(self, value, prop, node):
        if isinstance(value, dict) and prop in value:
            return value[prop]
        return Opaque(f"{_render(value)}.{prop}")

    def call(self, fn, args):
        if fn == "if":
            return self.eval(args[1]) if self.eval(args[0]) else self.eval(args[2])
        values = [self.eval(a) for a in args]
        if fn == "empty":
            return not values[0]
        if fn == "not":
            return not values[0]
        if fn == "equals":
            return values[0] == values[1]
        if fn == "string":
            return Opaque(f"string({_render(values[0])})") if isinstance(values[0], Opaque) else str(values[0])
        if fn == "join":
            return ",".join(values[0]) if isinstance(values[0], list) else Opaque(f"join({values[0]})")
        if fn == "union":
            if all(isinstance(v, dict) for v in values):
                merged = {}
                for v in values:
                    merged.update(v)
                return merged
        if fn == "null":
            return None
        if fn in ("subscription", "resourceGroup", "environment"):
            return Opaque(f"{fn}()")
        return Opaque(f"{fn}({','.join(_render(v) for v in values)})")


class BicepFile(Evaluator):
    def __init__(self, path: Path, overrides: dict | None = None):
        text = path.read_text()
        self.text = text
        self.params, self.param_decl, self.vars_src, self.resources, self.outputs = {}, {}, {}, {}, []
        lines = text.splitlines()
        decorators: dict = {}
        i = 0
        while i < len(lines):
            line = lines[i]
            block, end = self._block(lines, i)
            if line.startswith("@"):
                m = re.match(r"@(\w+)\((.*)\)$", block, re.S)
                if m and m.group(1) != "description":
                    decorators[m.group(1)] = self._literal(m.group(2))
            elif line.startswith("param "):
                m = re.match(r"param (\w+) (\w+)(?: = ([\s\S]+))?$", block)
                name, ptype, default = m.groups()
                self.param_decl[name] = {"type": ptype, **decorators}
                if default is not None:
                    self.param_decl[name]["default"] = default.strip()
                decorators = {}
            elif line.startswith("var "):
                m = re.match(r"var (\w+) = ([\s\S]+)$", block)
                self.vars_src[m.group(1)] = m.group(2).strip()
            elif line.startswith("resource "):
                m = re.match(r"resource (\w+) '([^'@]+)@([^']+)' = (?:if \((.*)\) )?\{", line)
                symbol, rtype, api, cond = m.groups()
                body = {k: v for k, v in re.findall(r"^  (\w+): (.+)$", block, re.M)}
                self.resources[symbol] = {"type": rtype, "api": api, "condition": cond, "body": body, "text": block}
            elif line.startswith("output "):
                self.outputs.append(re.match(r"output (\w+) (\w+)", line).groups())
            i = end + 1
        self.overrides = overrides or {}

    @staticmethod
    def _block(lines, i):
        """The statement starting at line i, through its closing bracket when it opens one."""
        depth, j = 0, i
        while True:
            stripped = re.sub(r"'(?:[^'\\]|\\.)*'", "''", lines[j].split("//")[0] if "'" not in lines[j] else lines[j])
            depth += stripped.count("{") + stripped.count("[") + stripped.count("(")
            depth -= stripped.count("}") + stripped.count("]") + stripped.count(")")
            if depth <= 0:
                return "\n".join(lines[i:j + 1]), j
            j += 1

    @staticmethod
    def _literal(src: str):
        src = src.strip()
        if src.startswith("["):
            return [BicepFile._literal(x) for x in src[1:-1].split("\n") if x.strip()]
        if src.startswith("'"):
            return src[1:-1]
        if src in ("true", "false"):
            return src == "true"
        if re.fullmatch(r"-?\d+", src):
            return int(src)
        if src == "{}":
            return {}
        return Opaque(src)

    def param_value(self, name):
        if name in self.overrides:
            return self.overrides[name]
        default = self.param_decl[name].get("default")
        if default is None:
            return Opaque(name)
        literal = self._literal(default)
        return self.eval(parse(default, True)) if isinstance(literal, Opaque) else literal

    def name(self, ident):
        if ident in self.param_decl:
            return self.param_value(ident)
        if ident in self.vars_src:
            src = self.vars_src[ident]
            return self.object_keys(ident) if src.startswith("{") else self.eval(parse(src, True))
        if ident in self.resources:
            return {"__resource__": ident}
        raise KeyError(ident)

    def member(self, value, prop, node):
        if isinstance(value, dict) and "__resource__" in value:
            sym = value["__resource__"]
            if prop == "id":
                return canonical_id(self.resources[sym]["type"], self.full_name(sym))
            if prop == "name":
                return self.full_name(sym).split("/")[-1]
            if prop == "properties":  # known once deployed: the same text as ARM's reference(resourceId(...))
                return Opaque(f"reference({canonical_id(self.resources[sym]['type'], self.full_name(sym))})")
            return Opaque(f"{sym}.{prop}")
        return super().member(value, prop, node)

    def call(self, fn, args):
        if fn == "listKeys" and args[0][0] == "name" and args[0][1] in self.resources:  # symbol.listKeys()
            sym = args[0][1]
            return Opaque(f"listKeys({canonical_id(self.resources[sym]['type'], self.full_name(sym))})")
        return super().call(fn, args)

    def object_keys(self, var: str) -> dict:
        """A var holding an object literal: its keys, with each value evaluated where it can be."""
        out = {}
        for key, src in re.findall(r"^  (\w+): (.+)$", self.vars_src[var], re.M):
            try:
                out[key] = self.eval(parse(src, True))
            except (ValueError, KeyError):
                out[key] = Opaque(src)
        return out

    def full_name(self, sym: str) -> str:
        res = self.resources[sym]
        own = self.eval(parse(res["body"]["name"], True))
        parent = res["body"].get("parent")
        return f"{self.full_name(parent)}/{own}" if parent else own

    def deployed(self) -> dict:
        """(type, full name) -> {'scope': ..., 'condition': bool} for the resources this parameter set deploys."""
        out = {}
        for sym, res in self.resources.items():
            if res["condition"] is not None and not self.eval(parse(res["condition"], True)):
                continue
            scope = res["body"].get("scope")
            scope_id = self.eval(parse(scope + ".id", True)) if scope else None
            out[(res["type"], self.full_name(sym))] = scope_id
        return out


class ArmFile(Evaluator):
    bicep = False

    def __init__(self, path: Path, overrides: dict | None = None):
        self.template = json.loads(path.read_text())
        self.overrides = overrides or {}

    def expr(self, value):
        """Evaluate a template value: '[...]' strings are expressions, everything else is literal."""
        if isinstance(value, str) and value.startswith("[") and value.endswith("]") and not value.startswith("[["):
            return self.eval(parse(value[1:-1], False))
        if isinstance(value, dict):
            return {self.expr(k): self.expr(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expr(v) for v in value]
        return value

    def name(self, ident):
        if ident in ("true", "false"):
            return ident == "true"
        raise KeyError(ident)

    def call(self, fn, args):
        if fn == "parameters":
            name = self.eval(args[0])
            if name in self.overrides:
                return self.overrides[name]
            return self.expr(self.template["parameters"][name].get("defaultValue", Opaque(name)))
        if fn in ("reference", "listKeys"):  # known once deployed; the API version aside, the same text as Bicep's
            return Opaque(f"{fn}({_render(self.eval(args[0]))})")
        if fn == "variables":
            return self.expr(self.template["variables"][self.eval(args[0])])
        if fn == "createArray":
            return [self.eval(a) for a in args]
        if fn in ("format", "concat", "resourceId", "createObject", "min") and args:
            values = [self.eval(a) for a in args]
            if fn == "format":
                known = not any(isinstance(v, Opaque) for v in values)
                return (str if known else Opaque)(values[0].format(*[_render(v) for v in values[1:]]))
            if fn == "concat":
                return "".join(_render(v) for v in values)
            if fn == "resourceId":
                return canonical_id(values[0], "/".join(values[1:]))
            if fn == "createObject":
                return dict(zip(values[::2], values[1::2]))
            return Opaque(f"min({_render(values[0])},{_render(values[1])})")
        return super().call(fn, args)

    def deployed(self) -> dict:
        out = {}
        for res in self.template["resources"]:
            if "condition" in res and not self.expr(res["condition"]):
                continue
            scope = self.expr(res["scope"]) if "scope" in res else None
            out[(res["type"], self.expr(res["name"]))] = scope
        return out

    def resource(self, rtype: str) -> dict:
        found = [r for r in self.template["resources"] if r["type"] == rtype]
        assert len(found) == 1, rtype
        return found[0]


SCENARIOS = [
    {"planType": "Consumption", "uploaderPrincipalId": "", "alertEmail": ""},
    {"planType": "FlexConsumption", "uploaderPrincipalId": "", "alertEmail": ""},
    {"planType": "Consumption", "uploaderPrincipalId": "00000000-0000-0000-0000-000000000001", "alertEmail": ""},
    {"planType": "FlexConsumption", "uploaderPrincipalId": "00000000-0000-0000-0000-000000000001",
     "alertEmail": "ops@example.org"},
]


@pytest.mark.parametrize("overrides", SCENARIOS, ids=lambda o: f"{o['planType']}-uploader{bool(o['uploaderPrincipalId'])}"
                                                             f"-email{bool(o['alertEmail'])}")
def test_bicep_and_arm_deploy_the_same_resources(overrides):
    bicep = BicepFile(BICEP, overrides).deployed()
    arm = ArmFile(ARM, overrides).deployed()
    assert sorted(bicep) == sorted(arm)
    assert bicep == arm  # same scopes for the role assignments, too
    types = {t for t, _ in bicep}
    assert {"Microsoft.Web/sites", "Microsoft.Web/serverfarms", "Microsoft.Storage/storageAccounts",
            "Microsoft.Storage/storageAccounts/blobServices/containers", "Microsoft.Insights/components",
            "Microsoft.ManagedIdentity/userAssignedIdentities", "Microsoft.Authorization/roleAssignments"} <= types
    uploader_roles = [k for k in bicep if k[0] == "Microsoft.Authorization/roleAssignments" and "ba92f5b4" in k[1]]
    assert len(uploader_roles) == (1 if overrides["uploaderPrincipalId"] else 0)
    assert [t for t, _ in bicep].count("Microsoft.Insights/scheduledQueryRules") == 2
    assert ("Microsoft.Insights/actionGroups" in types) == bool(overrides["alertEmail"])


def _bicep_settings(plan: str) -> dict:
    bicep = BicepFile(BICEP, {"planType": plan})
    assert bicep.resources["appSettings"]["body"]["properties"] == \
        "union(commonSettings, isFlex ? flexSettings : consumptionSettings)"
    settings = dict(bicep.object_keys("commonSettings"))
    settings.update(bicep.object_keys("flexSettings" if plan == "FlexConsumption" else "consumptionSettings"))
    return settings


def _arm_settings(plan: str) -> dict:
    arm = ArmFile(ARM, {"planType": plan})
    return arm.expr(arm.resource("Microsoft.Web/sites/config")["properties"])


@pytest.mark.parametrize("plan", ["Consumption", "FlexConsumption"])
def test_app_settings_match_for_each_plan(plan):
    bicep, arm = _bicep_settings(plan), _arm_settings(plan)
    assert sorted(bicep) == sorted(arm)
    for key, value in bicep.items():  # the same value, or the same expression of deploy-time values
        assert value == arm[key], key
    assert arm["DATASET_BLOB_CONTAINER"] == "datasets"
    assert arm["CORS_ALLOWED_ORIGINS"].split(",")[:2] == ["https://lenseg.github.io", "https://sids-dashboard.github.io"]
    assert {"APPLICATIONINSIGHTS_CONNECTION_STRING", "AZURE_CLIENT_ID", "DATASET_BLOB_ACCOUNT_URL"} <= set(arm)
    if plan == "FlexConsumption":  # runtime settings are refused on Flex; identity-based host storage
        assert "FUNCTIONS_WORKER_RUNTIME" not in arm and "AzureWebJobsStorage" not in arm
        assert arm["AzureWebJobsStorage__credential"] == "managedidentity"
    else:
        assert arm["FUNCTIONS_WORKER_RUNTIME"] == "python" and arm["FUNCTIONS_EXTENSION_VERSION"] == "~4"


def test_parameters_and_outputs_match():
    bicep = BicepFile(BICEP)
    arm = ArmFile(ARM)
    params = arm.template["parameters"]
    assert list(bicep.param_decl) == list(params)
    types = {"string": "string", "int": "int", "array": "array", "object": "object", "bool": "bool"}
    for name, decl in bicep.param_decl.items():
        assert types[decl["type"]] == params[name]["type"], name
        if "default" in decl:
            assert _render(bicep.param_value(name)) == _render(arm.expr(params[name]["defaultValue"])), name
        for bicep_key, arm_key in (("allowed", "allowedValues"), ("minValue", "minValue"), ("maxValue", "maxValue"),
                                   ("minLength", "minLength"), ("maxLength", "maxLength")):
            assert decl.get(bicep_key) == params[name].get(arm_key), (name, bicep_key)
    assert [name for name, _ in bicep.outputs] == list(arm.template["outputs"])


def test_site_is_python_311_with_platform_cors_left_empty():
    """Platform CORS would answer preflights itself and drop the app's headers: it must stay empty."""
    for plan in ("Consumption", "FlexConsumption"):
        arm = ArmFile(ARM, {"planType": plan})
        site = arm.expr(arm.resource("Microsoft.Web/sites"))
        assert site["properties"]["siteConfig"]["cors"] == {"allowedOrigins": [], "supportCredentials": False}
        assert site["properties"]["httpsOnly"] is True
        assert site["kind"] == "functionapp,linux"
        if plan == "Consumption":
            assert site["properties"]["siteConfig"]["linuxFxVersion"] == "Python|3.11"
            assert site["properties"]["functionAppConfig"] is None
        else:
            assert site["properties"]["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
        plan_sku = arm.expr(arm.resource("Microsoft.Web/serverfarms")["sku"])
        assert plan_sku == ({"name": "Y1", "tier": "Dynamic"} if plan == "Consumption" else
                            {"name": "FC1", "tier": "FlexConsumption"})
    assert "allowedOrigins: []" in BICEP.read_text()


def test_app_identity_only_reads_the_dataset_container():
    arm = ArmFile(ARM)
    reader = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    roles = [r for r in arm.template["resources"] if r["type"] == "Microsoft.Authorization/roleAssignments"]
    on_data = [r for r in roles if "dataStorageName" in r["scope"]]
    assert {arm.expr(r["properties"]["roleDefinitionId"]).split(",")[-1].rstrip(")") for r in on_data
            if "principalType" in r["properties"] and r["properties"]["principalType"] == "ServicePrincipal"} == {reader}
    assert arm.expr(on_data[0]["scope"]).endswith("/blobServices/default/containers/datasets")
    data = [r for r in arm.template["resources"] if r["type"] == "Microsoft.Storage/storageAccounts"
            and "dataStorageName" in r["name"]][0]
    assert data["properties"]["allowSharedKeyAccess"] is False and data["properties"]["allowBlobPublicAccess"] is False


def test_azd_wiring():
    import yaml

    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    assert azure["services"]["api"]["host"] == "function" and azure["services"]["api"]["language"] == "python"
    main = BicepFile(INFRA / "main.bicep")
    assert "module app 'serverless/function-app.bicep'" in main.text
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(params) <= set(main.param_decl)
    assert {n for n, d in main.param_decl.items() if "default" not in d} <= set(params)
    assert (ROOT / "infra" / "scripts" / "postprovision.sh").exists()
    assert "azd-service-name" in BICEP.read_text()


def test_readme_deploy_button_points_at_the_portal_template():
    readme = (INFRA / "README.md").read_text()
    m = re.search(r"https://portal\.azure\.com/#create/Microsoft\.Template/uri/([^)\s]+)\)", readme)
    assert m, "the Deploy to Azure button is missing"
    raw = unquote(m.group(1))
    assert raw == "https://raw.githubusercontent.com/OWNER/REPO/main/infra/serverless/azuredeploy.json"
    assert m.group(1) == quote(raw, safe="")


# --- telemetry: Entra ID only, alerts, saved query ---------------------------------------------------

MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
# The columns of the workspace table AppRequests (Azure Monitor Logs reference) the queries may read.
APP_REQUESTS_COLUMNS = {"TimeGenerated", "Name", "Url", "Success", "ResultCode", "DurationMs", "Properties",
                        "Measurements", "OperationName", "OperationId", "ParentId", "AppRoleName", "AppRoleInstance",
                        "ItemCount", "ClientIP", "Id"}
QUERIES = ("serverErrorsQuery", "overloadQuery", "latencyByOptionQuery")


@pytest.mark.parametrize("plan", ["Consumption", "FlexConsumption"])
def test_application_insights_takes_telemetry_from_the_app_identity_only(plan):
    arm = ArmFile(ARM, {"planType": plan})
    component = arm.expr(arm.resource("Microsoft.Insights/components"))
    assert component["properties"]["DisableLocalAuth"] is True
    bicep = BicepFile(BICEP, {"planType": plan})
    assert "DisableLocalAuth: true" in bicep.resources["appInsights"]["text"]
    # the app's identity may publish, on the component itself
    component_id = canonical_id("Microsoft.Insights/components", component["name"])
    roles = [r for r in arm.template["resources"] if r["type"] == "Microsoft.Authorization/roleAssignments"
             and "monitoringMetricsPublisher" in r["properties"]["roleDefinitionId"]]
    assert len(roles) == 1 and arm.expr(roles[0]["scope"]) == component_id
    identity = arm.expr(arm.resource("Microsoft.ManagedIdentity/userAssignedIdentities")["name"])
    assert arm.expr(roles[0]["properties"]["principalId"]) == \
        f"reference(Microsoft.ManagedIdentity/userAssignedIdentities/{identity}).principalId"
    assert arm.template["variables"]["monitoringMetricsPublisher"] == MONITORING_METRICS_PUBLISHER
    assert f"var monitoringMetricsPublisher = '{MONITORING_METRICS_PUBLISHER}'" in bicep.text
    assert (("Microsoft.Authorization/roleAssignments", arm.expr(roles[0]["name"]))) in bicep.deployed()
    # ... and says so: Entra ID with the client id of the identity the app runs as
    for settings in (_arm_settings(plan), _bicep_settings(plan)):
        assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == \
            f"ClientId={settings['AZURE_CLIENT_ID']};Authorization=AAD"
        assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"].startswith("reference(Microsoft.Insights/components/")
    # the site waits for the role, so its first telemetry is not refused
    site = arm.resource("Microsoft.Web/sites")
    assert any("monitoringMetricsPublisher" in d for d in site["dependsOn"])
    assert "appInsightsPublisherRole" in bicep.resources["functionApp"]["text"]


def test_alerts_and_saved_query_read_the_same_queries_on_the_workspace():
    arm = ArmFile(ARM)
    bicep = BicepFile(BICEP)
    for name in QUERIES:  # the same KQL in both templates
        assert bicep.eval(parse(bicep.vars_src[name], True)) == arm.template["variables"][name], name
    workspace = canonical_id("Microsoft.OperationalInsights/workspaces",
                             arm.expr(arm.resource("Microsoft.OperationalInsights/workspaces")["name"]))
    alerts = {r["properties"]["criteria"]["allOf"][0]["query"]: arm.expr(r)
              for r in arm.template["resources"] if r["type"] == "Microsoft.Insights/scheduledQueryRules"}
    assert set(alerts) == {"[variables('serverErrorsQuery')]", "[variables('overloadQuery')]"}
    for var, column, threshold in (("serverErrorsQuery", "FailedPercent", 5), ("overloadQuery", "Refused", 10)):
        alert = alerts[f"[variables('{var}')]"]["properties"]
        criterion = alert["criteria"]["allOf"][0]
        assert alert["scopes"] == [workspace]
        assert criterion["metricMeasureColumn"] == column and f"{column} = " in arm.template["variables"][var]
        assert criterion["threshold"] == threshold and criterion["operator"] == "GreaterThan"
        assert alert["actions"]["actionGroups"] == []  # no e-mail given
        symbol = {"serverErrorsQuery": "serverErrorsAlert", "overloadQuery": "overloadAlert"}[var]
        text = bicep.resources[symbol]["text"]
        assert f"query: {var}" in text and f"metricMeasureColumn: '{column}'" in text
        assert f"timeAggregation: '{criterion['timeAggregation']}'" in text
        assert f"windowSize: '{alert['windowSize']}'" in text and "logs.id" in text
    with_email = ArmFile(ARM, {"alertEmail": "ops@example.org"})
    group = with_email.expr(with_email.resource("Microsoft.Insights/actionGroups"))
    assert group["properties"]["emailReceivers"][0]["emailAddress"] == "ops@example.org"
    for r in with_email.template["resources"]:
        if r["type"] == "Microsoft.Insights/scheduledQueryRules":
            assert with_email.expr(r["properties"]["actions"]["actionGroups"]) == [
                canonical_id("Microsoft.Insights/actionGroups", group["name"])]
    # a request the host and the app's span both record is one operation: counted once
    for var in ("serverErrorsQuery", "overloadQuery"):
        assert "count()" not in arm.template["variables"][var] and "dcount(OperationId)" in arm.template["variables"][var]
    assert "| where isnotempty(model) |" in arm.template["variables"]["latencyByOptionQuery"]  # the app's spans only
    # 5xx counts server errors but not the overload 503s, which have their own alert; /health is not overload
    assert 'ResultCode != "503"' in arm.template["variables"]["serverErrorsQuery"]
    assert 'ResultCode == "503" and Url !has "/health"' in arm.template["variables"]["overloadQuery"]
    search = arm.expr(arm.resource("Microsoft.OperationalInsights/workspaces/savedSearches"))
    assert search["properties"]["query"] == arm.template["variables"]["latencyByOptionQuery"]
    assert search["name"].startswith(arm.expr(arm.resource("Microsoft.OperationalInsights/workspaces")["name"]) + "/")


@pytest.mark.parametrize("name", QUERIES)
def test_queries_read_only_columns_app_requests_has(name):
    """A misspelt column makes a log alert fail at evaluation time, silently: check the names here."""
    query = ArmFile(ARM).template["variables"][name]
    assert query.startswith("AppRequests | ")
    defined = set(re.findall(r"\b([A-Za-z_]\w*) = ", query))
    capitalised = set(re.findall(r"\b([A-Z]\w*)\b", query)) - {"AppRequests"}
    assert capitalised - defined <= APP_REQUESTS_COLUMNS, capitalised - defined - APP_REQUESTS_COLUMNS


def test_flex_consumption_is_the_default_and_configured_as_flex():
    for decl in (BicepFile(BICEP).param_decl["planType"], BicepFile(INFRA / "main.bicep").param_decl["planType"]):
        assert decl["default"] == "'FlexConsumption'"
    assert ArmFile(ARM).template["parameters"]["planType"]["defaultValue"] == "FlexConsumption"
    azd = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["planType"]["value"]
    assert azd == "${SIDS_PLAN_TYPE=FlexConsumption}"
    arm = ArmFile(ARM)  # the defaults: Flex
    config = arm.expr(arm.resource("Microsoft.Web/sites"))["properties"]["functionAppConfig"]
    scale = config["scaleAndConcurrency"]
    assert scale["instanceMemoryMB"] == 2048 and scale["alwaysReady"] == []
    assert scale["triggers"] == {"http": {"perInstanceConcurrency": 4}}
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert config["deployment"]["storage"]["value"].endswith(".primaryEndpoints.blobapp-package")
    assert {2048, 4096} <= set(arm.template["parameters"]["instanceMemoryMB"]["allowedValues"])
    ready = ArmFile(ARM, {"alwaysReadyInstances": 2, "httpPerInstanceConcurrency": 1})
    scale = ready.expr(ready.resource("Microsoft.Web/sites"))["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["alwaysReady"] == [{"name": "http", "instanceCount": 2}]
    assert scale["triggers"]["http"]["perInstanceConcurrency"] == 1
    site = BicepFile(BICEP).resources["functionApp"]["text"]
    assert "perInstanceConcurrency: httpPerInstanceConcurrency" in site
    assert "instanceCount: alwaysReadyInstances" in site and "alwaysReadyInstances == 0 ? [] : [" in site
    flex = _arm_settings("FlexConsumption")  # settings Flex refuses or has no use for
    for refused in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                    "AzureWebJobsStorage", "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD"):
        assert refused not in flex, refused
    workflow = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert "if: vars.AZURE_FUNCTIONAPP_PLAN == 'Consumption'" in workflow  # Flex unless Consumption is named
    assert "if: vars.AZURE_FUNCTIONAPP_PLAN != 'Consumption'" in workflow

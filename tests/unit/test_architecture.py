"""docs/architecture.md's import table is the code's, and the rooms keep their rules (scripts/architecture.py)."""
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import architecture  # noqa: E402


def test_rules_hold_and_the_document_matches_the_imports(capsys):
    assert architecture.main(["--check"]) == 0, capsys.readouterr().err


def test_a_broken_rule_is_reported():
    graph = {"models/demo": {"shared/http"}, "shared/store": {"blueprints/demo"}, "models/other": {"models/demo"},
             "shared/capacity": {"models/demo"}}
    broken = architecture.violations(graph)
    assert len(broken) == 4 and any("models/demo imports shared/http" in b for b in broken)


def test_a_blueprint_imports_only_the_model_package_it_serves():
    """Its own name's package, or the one it declares (blueprints/aimode.py: MODEL_PACKAGE = "twolvlimp")."""
    served = architecture.served_models()
    assert served["blueprints/aimode"] == "models/twolvlimp" and served["blueprints/statimpute"] == "models/statimpute"
    assert architecture.violations({"blueprints/aimode": {"models/twolvlimp", "models/errors"}}) == []
    [broken] = architecture.violations({"blueprints/statimpute": {"models/twolvlimp"}})
    assert "blueprints/statimpute imports models/twolvlimp" in broken

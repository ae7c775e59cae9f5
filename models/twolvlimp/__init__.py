"""Two-level imputation (twolvlImp): no HTTP, no storage, no settings.

Modules, read top-down: ``lookups`` (what the data allows; checking a request), ``runtime`` (what an
instance keeps between requests, and the path of one request), ``method`` / ``legacy`` (the default and
the old method), ``tree_search``, ``stacking``, ``selection``, ``imputers``, ``trees``, ``intervals``,
``temporal`` (their parts), ``work`` / ``costs`` (the work a request needs, and its price in seconds),
``memo`` and ``result`` (memo tables; the response body), ``aimode`` (the dashboard's AI Mode files: every
year of one indicator per model slot, checked against the page's rules).

Level 1 fills the gaps of the candidate predictors with a base imputer; level 2 stacks the
user's cross-validated tree model with ridge regressions and the mean (weights chosen out of
fold) on every country with a target value and predicts the SIDS whose value is missing, with
conformal 90% intervals. See docs/twolvlimp.md.

Public entry points (what blueprints/twolvlimp.py and scripts/eval_twolvlimp.py call):

* :class:`TwoLevelRuntime` -- what an instance keeps between requests (result cache, compute
  slots, fit pool, learned durations); its ``predict_response`` is the /predict answer (JSON
  bytes) and its ``estimate_seconds`` the /estimate answer;
* :mod:`models.twolvlimp.lookups` -- look-ups (target years, datasets, targets, predictors...) and
  request checking (:class:`ImputationRequest`, :class:`ImputationError`);
* the estimators: :class:`DepthForest`, :class:`BoostedTrees`, :class:`GeometricRFE`,
  :class:`ScaledKNNImputer`, :func:`fit_stacked` (the default method's second level).
"""
from __future__ import annotations

import importlib

# Where each public name lives. They are imported on first use (PEP 562), not with the package:
# importing ``models.twolvlimp.lookups`` (the look-ups, which an instance's start needs) must not pull
# in scikit-learn, which only fitting needs (a second of every instance's start otherwise).
_EXPORTS = {
    "ImputationError": "lookups", "ImputationRequest": "lookups", "resolve": "lookups",
    "ScaledKNNImputer": "imputers", "make_base_imputer": "imputers",
    "GeometricRFE": "selection", "pca_select": "selection",
    "fit_stacked": "stack",
    "TwoLevelRuntime": "runtime",
    "BoostedTrees": "trees", "DepthForest": "trees",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

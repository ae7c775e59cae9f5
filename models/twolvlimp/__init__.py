"""Two-level imputation (twolvlImp): pure ML, no HTTP.

Level 1 fills the gaps of the candidate predictors with a base imputer; level 2 stacks the
user's cross-validated tree model with ridge regressions and the mean (weights chosen out of
fold) on every country with a target value and predicts the SIDS whose value is missing, with
conformal 90% intervals. See docs/twolvlimp.md.

Public entry points (what blueprints/twolvlimp.py and scripts/eval_twolvlimp.py call):

* :func:`predict_response` -- the /predict answer (JSON bytes, per-instance result cache);
* :func:`estimate_seconds` -- the /estimate answer;
* :mod:`models.twolvlimp.data` -- look-ups (target years, datasets, targets, predictors...) and
  request checking (:class:`ImputationRequest`, :class:`ImputationError`);
* the estimators: :class:`DepthForest`, :class:`BoostedTrees`, :class:`GeometricRFE`,
  :class:`ScaledKNNImputer`, :func:`fit_stacked` (the default method's second level) and
  :func:`fit_and_predict` (the trees alone, with the former fixed shrinkage).
"""
from models.twolvlimp.data import ImputationError, ImputationRequest, resolve
from models.twolvlimp.engine import fit_and_predict
from models.twolvlimp.imputers import ScaledKNNImputer, make_base_imputer
from models.twolvlimp.selection import GeometricRFE, pca_select
from models.twolvlimp.service import estimate_seconds, predict_response, reset_state, result_cache
from models.twolvlimp.stacking import fit_stacked
from models.twolvlimp.trees import BoostedTrees, DepthForest

__all__ = [
    "BoostedTrees", "DepthForest", "GeometricRFE", "ImputationError", "ImputationRequest", "ScaledKNNImputer",
    "estimate_seconds", "fit_and_predict", "fit_stacked", "make_base_imputer", "pca_select", "predict_response", "reset_state",
    "resolve", "result_cache",
]

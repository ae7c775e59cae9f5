"""Tree ensembles for the two-level imputation model, built for many small fits.

* :class:`DepthForest` is scikit-learn's ``RandomForestRegressor`` (``kind="rf"``) or
  ``ExtraTreesRegressor`` (``kind="et"``) -- same trees, same seeding, same weighted
  bootstrap -- grown to full depth once and then *read* at any smaller depth: a tree
  pruned to depth ``d`` predicts, for each sample, the value of the node where its path
  reaches depth ``d``. One fit therefore serves the whole ``max_depth`` grid.
* :class:`BoostedTrees` is ``GradientBoostingRegressor`` (squared-error or quantile loss,
  learning rate 0.1, no subsampling) with the per-stage overhead removed.

Both grow their trees with scikit-learn's own Cython tree builder, called directly: the inputs
are checked once here instead of once per tree, which is most of the cost of a small tree
(about 2x at 120 rows x 3 features, 1.2x at 160 x 10, nothing at 200 x 50; the large gain is
DepthForest's "grow once, read at every depth", which uses documented attributes only). That
builder is not public API: when this module loads, a few trees are grown both ways and compared,
and on any difference (another scikit-learn version) ``DecisionTreeRegressor.fit`` is used
instead (the same trees, more overhead). Which path is used is logged (a warning for the
fallback), and ``tests/unit/test_twolvlimp_model.py`` fails if the pinned version falls back, and
checks both paths reproduce scikit-learn's estimators.
"""
from __future__ import annotations

import logging

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.tree import DecisionTreeRegressor, ExtraTreeRegressor
from sklearn.utils import check_random_state

MAX_INT = np.iinfo(np.int32).max

try:  # scikit-learn's tree builder (private API, pinned version; see module docstring)
    from sklearn.tree._criterion import MSE as _MSE
    from sklearn.tree._splitter import BestSplitter as _BestSplitter
    from sklearn.tree._splitter import RandomSplitter as _RandomSplitter
    from sklearn.tree._tree import DepthFirstTreeBuilder as _Builder
    from sklearn.tree._tree import Tree as _Tree
except ImportError:  # pragma: no cover - other scikit-learn versions
    _Builder = None


def _max_features(max_features, n_features: int) -> int:
    if max_features is None:
        return n_features
    if isinstance(max_features, str):
        return max(1, int(np.sqrt(n_features) if max_features == "sqrt" else np.log2(n_features)))
    if isinstance(max_features, (int, np.integer)) and not isinstance(max_features, bool):
        return int(max_features)
    return max(1, int(max_features * n_features))


def _grow_public(X, y, w, max_depth, max_features, random_state, random_split: bool):
    cls = ExtraTreeRegressor if random_split else DecisionTreeRegressor
    tree = cls(max_depth=max_depth, max_features=max_features, random_state=random_state)
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        tree.fit(X, y, sample_weight=w, check_input=False)
    return tree.tree_


def _grow_direct(X, y, w, max_depth, max_features, random_state, random_split: bool):
    n, p = X.shape
    criterion = _MSE(1, n)
    splitter_cls = _RandomSplitter if random_split else _BestSplitter
    splitter = splitter_cls(criterion, _max_features(max_features, p), 1, 0.0, check_random_state(random_state), None)
    tree = _Tree(p, np.ones(1, dtype=np.intp), 1)
    depth = MAX_INT if max_depth is None else int(max_depth)
    _Builder(splitter, 2, 1, 0.0, depth, 0.0).build(tree, X, y.reshape(-1, 1), w, None)
    return tree


def _direct_works() -> bool:
    if _Builder is None:
        return False
    try:
        rng = np.random.RandomState(0)
        X = rng.normal(size=(40, 3)).astype(np.float32)
        y = np.ascontiguousarray(X[:, 0] * 2 + rng.normal(size=40), dtype=np.float64)
        w = rng.uniform(0.5, 2, size=40)
        for random_split in (False, True):
            a = _grow_direct(X, y, w, None, 1.0, 3, random_split)
            b = _grow_public(X, y, w, None, 1.0, 3, random_split)
            if a.node_count != b.node_count or not np.array_equal(a.apply(X), b.apply(X)) \
                    or not np.allclose(a.value, b.value):
                return False
        return True
    except Exception:  # pragma: no cover - signature changed in another version
        return False


DIRECT_BUILDER = _direct_works()
if DIRECT_BUILDER:
    logging.getLogger("sids.twolvlimp").info("trees: scikit-learn %s's tree builder is called directly",
                                             sklearn.__version__)
else:
    logging.getLogger("sids.twolvlimp").warning(
        "trees: scikit-learn %s's tree builder differs from the pinned version's; falling back to "
        "DecisionTreeRegressor.fit (same trees, slower small fits)", sklearn.__version__)


def grow_tree(X: np.ndarray, y: np.ndarray, w: np.ndarray | None, max_depth=None, max_features=1.0,
              random_state=None, random_split: bool = False):
    """One regression tree (squared error) on float32 C-contiguous ``X``; returns its ``Tree``."""
    grow = _grow_direct if DIRECT_BUILDER else _grow_public
    return grow(X, y, None if w is None else np.ascontiguousarray(w, dtype=np.float64), max_depth, max_features,
                random_state, random_split)


def _as_x(X) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float32)


def _as_y(y) -> np.ndarray:
    return np.ascontiguousarray(y, dtype=np.float64).reshape(-1)


def weighted_quantile(values: np.ndarray, weights: np.ndarray | None, q: float) -> float:
    """The smallest value whose cumulative weight share reaches ``q`` (inverse of the weighted CDF)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    if weights is None:
        weights = np.ones_like(values)
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    total = cum[-1]
    if total <= 0:
        return float(np.median(values))
    idx = int(np.searchsorted(cum, q * total - 1e-12 * total, side="left"))
    return float(values[order][min(idx, values.size - 1)])


def grouped_weighted_quantile(groups: np.ndarray, values: np.ndarray, weights: np.ndarray,
                              q: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`weighted_quantile` of ``values`` within each group: (group ids, quantiles)."""
    order = np.lexsort((values, groups))
    g, v, w = groups[order], values[order], weights[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], g.size]
    cum = np.cumsum(w)
    before = np.where(starts > 0, cum[starts - 1], 0.0)
    total = cum[ends - 1] - before
    goal = before + q * total - 1e-12 * np.maximum(total, 1e-300)
    idx = np.searchsorted(cum, goal, side="left")
    idx = np.clip(idx, starts, ends - 1)
    return g[starts], v[idx]


class _TreeReader:
    """Node depths and ancestors of one fitted tree, to read it as if grown to a smaller depth (the node index
    is built on the first read at a smaller depth: reads of the full tree, as the selection's, never need it)."""

    __slots__ = ("tree", "value", "max_depth", "_index", "_depth", "_anc")

    def __init__(self, t):
        self.tree = t
        self.value = t.value[:, 0, 0].copy()
        self.max_depth = int(t.max_depth)   # the depth of its deepest node (the root's is 0)
        self._index = None
        self._depth = None                  # node depths handed in by the forest (_ForestIndex), if any
        self._anc: dict[int, np.ndarray] = {}

    def _nodes(self) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(parent of each node, the nodes of each level, the depth of each node)."""
        if self._index is None:
            t = self.tree
            left, right = t.children_left, t.children_right
            parent = np.full(t.node_count, -1, dtype=np.intp)
            internal = np.flatnonzero(left >= 0)
            parent[left[internal]] = internal
            parent[right[internal]] = internal
            levels = [np.zeros(1, dtype=np.intp)]
            frontier = levels[0]
            while True:
                kids = np.concatenate((left[frontier], right[frontier]))
                kids = kids[kids >= 0]
                if kids.size == 0:
                    break
                levels.append(kids)
                frontier = kids
            depth = np.empty(t.node_count, dtype=np.intp)
            for level, nodes in enumerate(levels):
                depth[nodes] = level
            self._index = (parent, levels, depth)
        return self._index

    @property
    def parent(self) -> np.ndarray:
        return self._nodes()[0]

    @property
    def levels(self) -> list[np.ndarray]:
        return self._nodes()[1]

    @property
    def depth(self) -> np.ndarray:
        return self._depth if self._depth is not None else self._nodes()[2]

    def ancestors(self, depth: int | None) -> np.ndarray | None:
        """node -> its ancestor at ``depth`` (itself when shallower); None when the tree is not deeper."""
        if depth is None or depth >= self.max_depth:
            return None
        anc = self._anc.get(depth)
        if anc is None:
            parent, levels, _ = self._nodes()
            anc = np.arange(self.tree.node_count, dtype=np.intp)
            for level in levels[depth + 1:]:
                anc[level] = anc[parent[level]]
            self._anc[depth] = anc
        return anc

    def predict(self, leaves: np.ndarray, depth: int | None) -> np.ndarray:
        anc = self.ancestors(depth)
        return self.value[leaves if anc is None else anc[leaves]]

    def importances(self, depth: int | None) -> np.ndarray:
        """Impurity decrease per feature of the tree pruned to ``depth``, normalised to sum 1 (or zeros)."""
        t = self.tree
        out = np.zeros(t.n_features, dtype=np.float64)
        left, right = t.children_left, t.children_right
        split = left >= 0
        if depth is not None and depth < self.max_depth:
            split &= self.depth < depth
        nodes = np.flatnonzero(split)
        if nodes.size == 0:
            return out
        w, imp = t.weighted_n_node_samples, t.impurity
        gain = w[nodes] * imp[nodes] - w[left[nodes]] * imp[left[nodes]] - w[right[nodes]] * imp[right[nodes]]
        np.add.at(out, t.feature[nodes], gain)
        out /= w[0]
        total = out.sum()
        return out / total if total > 0 else out


class _ForestIndex:
    """Every tree of a forest as one array of nodes (each tree's nodes after the previous tree's), to read all the
    trees at a smaller depth with a few array operations instead of a few per tree: the same nodes, so the same
    values as each tree's :class:`_TreeReader`."""

    def __init__(self, readers: list[_TreeReader]):
        counts = np.array([r.tree.node_count for r in readers], dtype=np.intp)
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
        left = np.concatenate([np.where(r.tree.children_left >= 0, r.tree.children_left + o, -1)
                               for r, o in zip(readers, self.offsets)])
        right = np.concatenate([np.where(r.tree.children_right >= 0, r.tree.children_right + o, -1)
                                for r, o in zip(readers, self.offsets)])
        self.value = np.concatenate([r.value for r in readers])
        self.parent = np.full(left.size, -1, dtype=np.intp)
        internal = np.flatnonzero(left >= 0)
        self.parent[left[internal]] = internal
        self.parent[right[internal]] = internal
        self.levels = [self.offsets]          # every tree's nodes at depth 0, 1, 2, ...
        frontier = self.offsets
        while True:
            kids = np.concatenate((left[frontier], right[frontier]))
            kids = kids[kids >= 0]
            if kids.size == 0:
                break
            self.levels.append(kids)
            frontier = kids
        self.depth = np.empty(left.size, dtype=np.intp)
        for level, nodes in enumerate(self.levels):
            self.depth[nodes] = level
        for r, o, c in zip(readers, self.offsets, counts):
            r._depth = self.depth[o:o + c]
        self._anc: dict[int, np.ndarray] = {}

    def ancestors(self, depth: int) -> np.ndarray:
        """node -> its ancestor at ``depth`` (itself when shallower), every tree."""
        anc = self._anc.get(depth)
        if anc is None:
            anc = np.arange(self.parent.size, dtype=np.intp)
            for level in self.levels[depth + 1:]:
                anc[level] = anc[self.parent[level]]
            self._anc[depth] = anc
        return anc

    def predict(self, leaves: list[np.ndarray], depth: int | None) -> np.ndarray:
        """Per-tree predictions (n_trees, n_samples) from each tree's leaves."""
        nodes = np.stack(leaves) + self.offsets[:, None]
        if depth is not None:
            nodes = self.ancestors(depth)[nodes]
        return self.value[nodes]


class DepthForest(RegressorMixin, BaseEstimator):
    """Random forest / extra trees regressor that can be read at any depth after one full-depth fit.

    With ``max_depth=None`` (default) and the same ``random_state`` it grows exactly the trees of
    ``RandomForestRegressor`` / ``ExtraTreesRegressor``. ``predict(X, depth=d)`` reads the trees
    pruned to depth ``d``; ``max_depth`` sets the depth used when none is given.
    """

    def __init__(self, kind: str = "rf", n_estimators: int = 100, max_depth: int | None = None,
                 max_features: float | int | str | None = 1.0, bootstrap: bool | None = None,
                 random_state=None):
        self.kind = kind
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.random_state = random_state

    def _uses_bootstrap(self) -> bool:
        return (self.kind == "rf") if self.bootstrap is None else bool(self.bootstrap)

    def fit(self, X, y, sample_weight=None):
        X = _as_x(X)
        y = _as_y(y)
        n = X.shape[0]
        w = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)
        rs = check_random_state(self.random_state)
        bootstrap = self._uses_bootstrap()
        p = None if w is None else w / w.sum()
        trees = []
        # One generator, re-seeded per use: the same draws as scikit-learn's fresh RandomState(seed)
        # for the bootstrap and for the splitter, without the cost of creating 2 generators per tree.
        draw = np.random.RandomState()
        for _ in range(self.n_estimators):
            seed = rs.randint(MAX_INT)
            if bootstrap:
                draw.seed(seed)
                idx = draw.randint(0, n, n) if p is None else draw.choice(n, n, replace=True, p=p)
                tree_w = np.bincount(idx.astype(np.int32), minlength=n).astype(np.float64)
            else:
                tree_w = w
            draw.seed(seed)
            trees.append(grow_tree(X, y, tree_w, None, self.max_features, draw, random_split=self.kind != "rf"))
        self.trees_ = trees
        self.readers_ = [_TreeReader(t) for t in trees]
        self._index = None   # the forest-wide node index, built on the first read at a smaller depth
        self.n_features_in_ = X.shape[1]
        self.tree_max_depth_ = max(r.max_depth for r in self.readers_)
        return self

    def leaves(self, X) -> list[np.ndarray]:
        X = _as_x(X)
        return [r.tree.apply(X) for r in self.readers_]

    def tree_predictions(self, X=None, depth: int | None = "default", leaves=None) -> np.ndarray:
        """Per-tree predictions, shape (n_trees, n_samples)."""
        depth = self.max_depth if depth == "default" else depth
        leaves = self.leaves(X) if leaves is None else leaves
        if depth is None or depth >= self.tree_max_depth_ or not leaves:
            return np.stack([r.value[lv] for r, lv in zip(self.readers_, leaves)])
        if getattr(self, "_index", None) is None:
            self._index = _ForestIndex(self.readers_)
        return self._index.predict(leaves, depth)

    def predict(self, X, depth: int | None = "default") -> np.ndarray:
        return self.tree_predictions(X, depth).mean(axis=0)

    def importances(self, depth: int | None = "default") -> np.ndarray:
        depth = self.max_depth if depth == "default" else depth
        per_tree = [r.importances(depth) for r in self.readers_]
        per_tree = [imp for imp in per_tree if imp.sum() > 0]
        if not per_tree:
            return np.zeros(self.n_features_in_)
        mean = np.mean(per_tree, axis=0)
        total = mean.sum()
        return mean / total if total > 0 else mean

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.importances()


class BoostedTrees(RegressorMixin, BaseEstimator):
    """``GradientBoostingRegressor`` (learning_rate 0.1, subsample 1, squared-error or quantile loss).

    Same stages and seeding as scikit-learn's; ``tree_max_depth_`` tells whether ``max_depth``
    was reached (if not, any larger ``max_depth`` grows identical trees).

    With ``n_iter_no_change`` set, ``n_estimators`` is the *maximum* number of stages: a share
    ``validation_fraction`` of the rows (seeded) is held out, stages are grown on the others until the
    weighted validation loss has not improved (by a relative ``tol``) for ``n_iter_no_change``
    stages, and the model is then refitted on *every* row with the number of stages that had the least
    validation loss (``n_estimators_``): the same model as ``n_estimators=n_estimators_`` without
    early stopping. ``stages_grown_`` counts the stages of both fits.
    """

    def __init__(self, n_estimators: int = 100, max_depth: int | None = 3, loss: str = "squared_error",
                 alpha: float = 0.9, learning_rate: float = 0.1, random_state=None,
                 n_iter_no_change: int | None = None, validation_fraction: float = 0.2, tol: float = 1e-3):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.loss = loss
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.tol = tol

    def _loss(self, y, raw, w) -> float:
        if self.loss == "quantile":
            d = y - raw
            return float(np.average(np.where(d > 0, self.alpha * d, (self.alpha - 1.0) * d), weights=w))
        return float(np.average((y - raw) ** 2, weights=w))

    def _stages(self, X, y, w, n_stages: int, X_val=None, y_val=None, w_val=None):
        """Grow up to ``n_stages`` stages; with validation rows, stop after ``n_iter_no_change`` stages
        without improvement. Returns (init, stages, max depth reached, validation loss after each stage)."""
        quantile = self.loss == "quantile"
        init = weighted_quantile(y, w, self.alpha) if quantile else float(np.average(y, weights=w))
        raw = np.full(y.shape[0], init)
        rs = check_random_state(self.random_state)
        stages: list[tuple] = []
        depth_reached = 0
        monitor = X_val is not None
        if monitor:
            raw_val = np.full(y_val.shape[0], init)
            losses, best, since = [], np.inf, 0
        for _ in range(n_stages):
            if quantile:
                neg_grad = np.where(y - raw > 0, self.alpha, self.alpha - 1.0)
            else:
                neg_grad = y - raw
            t = grow_tree(X, neg_grad, w, self.max_depth, None, rs)
            leaves = t.apply(X)
            values = t.value[:, 0, 0].copy()
            if quantile:
                leaf_ids, leaf_q = grouped_weighted_quantile(leaves, y - raw, w, self.alpha)
                values[leaf_ids] = leaf_q
            raw = raw + self.learning_rate * values[leaves]
            depth_reached = max(depth_reached, t.max_depth)
            stages.append((t, values))
            if monitor:
                raw_val = raw_val + self.learning_rate * values[t.apply(X_val)]
                loss = self._loss(y_val, raw_val, w_val)
                losses.append(loss)
                if loss < best * (1 - self.tol):
                    best, since = loss, 0
                else:
                    since += 1
                    if since >= self.n_iter_no_change:
                        break
        return init, stages, depth_reached, (losses if monitor else None)

    def fit(self, X, y, sample_weight=None):
        X = _as_x(X)
        y = _as_y(y)
        n = X.shape[0]
        w = np.ones(n) if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)
        n_stages, grown = int(self.n_estimators), 0
        n_val = int(round(self.validation_fraction * n))
        if self.n_iter_no_change is not None and n_val >= 2 and n - n_val >= 2:
            seed = check_random_state(self.random_state).randint(MAX_INT)
            order = np.random.RandomState(seed).permutation(n)
            val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
            _, stages, _, losses = self._stages(X[fit], y[fit], w[fit], n_stages, X[val], y[val], w[val])
            grown = len(stages)
            n_stages = int(np.argmin(losses)) + 1  # the first stage count with the least validation loss
        self.init_, self.trees_, self.tree_max_depth_, _ = self._stages(X, y, w, n_stages)
        self.n_estimators_ = len(self.trees_)
        self.stages_grown_ = grown + self.n_estimators_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        X = _as_x(X)
        raw = np.full(X.shape[0], self.init_)
        for t, values in self.trees_:
            raw += self.learning_rate * values[t.apply(X)]
        return raw

    @property
    def feature_importances_(self) -> np.ndarray:
        total = np.zeros(self.n_features_in_)
        for t, _ in self.trees_:
            if t.node_count > 1:
                total += t.compute_feature_importances(normalize=False)
        s = total.sum()
        return total / s if s > 0 else total

"""The twolvlImp work memos: request-dependent work kept per data version (imputed candidate matrices,
selections), in a byte-bounded memo table (shared/cache.py); the result cache is a :class:`LruCache` too."""
from __future__ import annotations

from shared.cache import LruCache, memo_table
from shared.dataset import Dataset

__all__ = ["LruCache", "work_memo", "work_memo_get", "work_memo_has", "work_memo_put"]

# Bounded by entries and bytes (WORK_MEMO_BYTES) so that many distinct targets cannot grow an instance's memory
# without limit.
WORK_MEMO_SIZE = 32
WORK_MEMO = ("twolvlimp", "work")


def work_memo(ds: Dataset, key, compute):
    """Like ``ds.memo`` (computed once per data version), but within the table's entries and bytes."""
    return memo_table(ds, WORK_MEMO, WORK_MEMO_SIZE).get_or_compute(key, compute)[0]


def work_memo_get(ds: Dataset, key):
    """The memoised value, or None (never computes it)."""
    return memo_table(ds, WORK_MEMO, WORK_MEMO_SIZE).get(key)


def work_memo_has(ds: Dataset, key) -> bool:
    return memo_table(ds, WORK_MEMO, WORK_MEMO_SIZE).contains(key)


def work_memo_put(ds: Dataset, key, value) -> None:
    """Store work computed elsewhere under the key the method looks it up by (a batch shares one year's
    imputation across its targets: ``models.twolvlimp.aimode``)."""
    memo_table(ds, WORK_MEMO, WORK_MEMO_SIZE).put(key, value)

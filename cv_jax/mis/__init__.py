"""The machine interpretability score (MIS; Zimmermann, Klindt & Brendel, NeurIPS 2024).

    from cv_jax import mis
    pools = mis.pools_from_sweep(sweep_result, quantile=0.1)
    scores = mis.score_pools(pools, embeddings, seed=0)      # all units, one program
    scores["accuracy"], scores["mis"], scores["deltas"]

`cv-jax mis --model=googlenet_bvlc --source=folder:/images` runs sweep, embedding, scoring and
the report in one command. See docs/mis.md.
"""

from cv_jax.mis.embeddings import (Embeddings, dreamsim_embeddings, load_embeddings_file,
                                   network_embeddings)
from cv_jax.mis.human import agreement, fit_alpha, read_accuracy_table, spearman
from cv_jax.mis.job import MISResult, run_mis
from cv_jax.mis.pools import Pools, pool_size, pools_from_sweep
from cv_jax.mis.report import write_report, write_scores
from cv_jax.mis.score import (CODE_ALPHA, DEFAULT_ALPHA, DEFAULT_K, DEFAULT_N, DEFAULT_QUANTILE,
                              draw_positions, mis_from_deltas, score_pools, task_deltas,
                              unit_keys)

__all__ = ["Embeddings", "dreamsim_embeddings", "load_embeddings_file", "network_embeddings",
           "agreement", "fit_alpha", "read_accuracy_table", "spearman", "MISResult", "run_mis",
           "Pools", "pool_size", "pools_from_sweep", "write_report", "write_scores",
           "CODE_ALPHA", "DEFAULT_ALPHA", "DEFAULT_K", "DEFAULT_N", "DEFAULT_QUANTILE",
           "draw_positions", "mis_from_deltas", "score_pools", "task_deltas", "unit_keys"]

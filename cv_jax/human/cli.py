"""`cv-jax human SUBCOMMAND [--flags]`: the subcommand table.

Each row is subcommand -> (module, function, help); only the chosen module is imported, so
each subcommand defines its own absl flags. Other parts of cv_jax add rows here.
"""

from __future__ import annotations

SUBCOMMANDS = {
    "init": ("cv_jax.human.commands.init", "main", "create a study from an experiment folder"),
    "serve": ("cv_jax.human.commands.serve", "main", "run the study server"),
    "status": ("cv_jax.human.commands.status", "main", "slots, sessions and anomalies"),
    "export": ("cv_jax.human.commands.export", "main", "write the response export"),
    "block": ("cv_jax.human.commands.block", "main", "block earlier studies' participant ids"),
    "analyze": ("cv_jax.human.commands.analyze", "main",
                "the paper's results from an export: figures, report.html, results_human.json"),
    "simulate": ("cv_jax.human.commands.simulate", "main",
                 "simulated participants: an export (--offline) or a session against a server"),
    "import-paper": ("cv_jax.human.commands.import_paper", "main",
                     "the paper's raw MTurk results (result_task_<k>.pkl) as an export"),
}

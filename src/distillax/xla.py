"""The XLA compiler options of distillax's programs, in one place for every module that
compiles one (`contexts`' k-means, the trainer's initial state, `render`'s recordings).

Programs that run once per run: XLA's backend optimisations buy nothing there, and cost most
of their compile time on CPU (the stacked teachers' init: 7.6 s -> 1.2 s, measured on the
2-core machine). Programs that run often (training, evaluation) keep XLA's default.
"""

RUN_ONCE = {"xla_backend_optimization_level": 0}

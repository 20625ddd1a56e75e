"""The host's reading of the numerical guard's flags (`trainer.nonfinite_report`)."""

import numpy as np

from distillax.trainer import NONFINITE_TERMS, nonfinite_report

K = len(NONFINITE_TERMS)  # reward, clip, value, entropy, couple, distill, grad, params


def _flags(shape, *set_at):
    f = np.zeros(shape + (K,), bool)
    for index in set_at:
        f[index] = True
    return f


def test_all_finite_is_no_report():
    assert nonfinite_report(_flags((3,)), 10) is None
    assert nonfinite_report(_flags((3, 2)), 10) is None


def test_names_the_first_faulty_iteration_and_its_terms():
    # a call of 4 iterations after iteration 10: iterations 11..14; the fault starts in the
    # third (13) with the reward; the fourth is NaN everywhere and is not the one named
    f = _flags((4,), (2, 0), (3, slice(None)))
    assert nonfinite_report(f, 10) == ("non-finite values at iteration 13 in: reward (the "
                                       "environment's reward)")
    f = _flags((1,), (0, NONFINITE_TERMS.index("grad")), (0, NONFINITE_TERMS.index("params")))
    assert nonfinite_report(f, 0) == ("non-finite values at iteration 1 in: grad (the "
                                      "gradients), params (the parameters after a step)")


def test_names_the_seeds_with_a_seed_axis():
    # [n=2, S=3, K]: seed 2 goes non-finite in iteration 2 of the call (value loss)
    f = _flags((2, 3), (1, 2, NONFINITE_TERMS.index("value")))
    assert nonfinite_report(f, 4) == ("non-finite values at iteration 6 (seeds [2] of 3) in: "
                                      "value (the value loss)")

"""Adversarial matrix, API side: every case of ``_adversarial_api_cases.CASES`` and
``_adversarial_ckpt_cases.CASES`` at 2 and 3 ranks, batched into one MPI job per table
and rank count (``_adversarial.run_batch``), judged here per case against numpy/h5py/
netCDF4-python references: the numpy-equal answer or a clean error on every rank, no hang,
every pre-existing file byte-identical, no temporary file left.
"""

import importlib

import pytest
from _adversarial import same

from support import SERIAL_ONLY

pytestmark = SERIAL_ONLY

TABLES = ["_adversarial_api_cases", "_adversarial_ckpt_cases"]
RANKS = [2, 3]
#: at 3 ranks (remainder blocks, a rank with fewer rows) only the cases whose outcome can
#: depend on the rank count: the others are P-independent and run at 2 ranks only
AT_3 = ("edge-", "layout-", "cf-", "disagree-", "comm-", "tiling-", "dtype-differs",
        "ckpt-entries-", "ckpt-files-", "ckpt-keep1", "ckpt-ranks", "memory-bef8")
#: a case that returns (not raises) must end within this many seconds (loaded machine)
CASE_SECONDS = 10.0


def _cases(module):
    return importlib.import_module(module).CASES


def _params():
    for module in TABLES:
        for ranks in RANKS:
            for case in _cases(module):
                if ranks >= case.min_ranks and (ranks == 2 or case.id.startswith(AT_3)):
                    yield pytest.param(module, ranks, case, id=f"{ranks}r-{case.id}")


@pytest.fixture(scope="module")
def batches(request, tmp_path_factory):
    """``{(module, ranks): (directory, {case id: record})}``: every selected case, one MPI job per
    table and rank count, two jobs at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from _adversarial import run_batch

    wanted: dict = {}
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "originalname", "") == "test_case" and "case" in params:
            wanted.setdefault((params["module"], params["ranks"]), []).append(params["case"].id)

    def one(key):
        module, ranks = key
        base = tmp_path_factory.mktemp(f"{module}-{ranks}")
        return base, run_batch(module, base, ranks, wanted[key])

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(wanted, pool.map(one, wanted)))


def _error_problems(outs, expect) -> list[str]:
    problems = []
    if all(o["ok"] for o in outs):
        return ["no error: every rank returned " + str(outs[0].get("value"))[:200]]
    if any(o["ok"] for o in outs):
        problems.append("some ranks returned, others raised: " +
                        "; ".join(f"rank {i}: " + ("returned" if o["ok"] else
                                                  f"{o['type']}: {o['message']}")
                                  for i, o in enumerate(outs)))
        return problems
    types = getattr(expect, "types", None)
    for i, o in enumerate(outs):
        if types and not set(types) & set(o["mro"]):
            problems.append(f"rank {i} raised {o['type']} ({o['message']!r}), expected one of "
                            f"{types}")
        if o["type"] in ("AssertionError", "SetupError") or "Numba" in o["type"]:
            problems.append(f"rank {i} raised an internal error {o['type']}: {o['message']}\n"
                            f"{o.get('where', '')}")
    words = getattr(expect, "words", ())
    if words and not any(w.lower() in outs[0]["message"].lower() for w in words):
        problems.append(f"message {outs[0]['message']!r} names none of {words}")
    if len({o["message"] for o in outs}) > 1:
        problems.append(f"ranks raised different messages: {[o['message'] for o in outs]}")
    return problems


def _value_problems(outs, ref, rtol) -> list[str]:
    problems = []
    for i, o in enumerate(outs):
        if not o["ok"]:
            problems.append(f"rank {i} raised {o['type']}: {o['message']}\n{o.get('where', '')}")
        else:
            problems += [f"rank {i}: {p}" for p in same(o["value"], ref, rtol=rtol)[:3]]
        if problems:
            break
    return problems


def judge(case, rec, d) -> list[str]:
    """Every way the record of one case breaks its expectation (empty: it passed)."""
    from _adversarial_api_cases import Either, NumpyOrError, Raises, Value

    if "crashed" in rec:
        return [f"{rec['crashed']}; stderr tail:\n{rec['stderr']}"]
    outs, expect = rec["ranks"], case.expect
    problems = []
    if isinstance(expect, Raises):
        problems = _error_problems(outs, expect)
    elif hasattr(expect, "steps"):  # checkpoint: any of these steps, with its exact state
        v = outs[0].get("value") if outs[0]["ok"] else None
        step = v.get("step") if isinstance(v, dict) else None
        problems = (_value_problems(outs, expect.ref(d)[step], 0.0) if step in expect.steps
                    else [f"restored {v if outs[0]['ok'] else outs[0]}, expected one of "
                          f"steps {expect.steps}"])
    elif isinstance(expect, Value):
        problems = _value_problems(outs, expect.ref(d), expect.rtol)
        if rec["seconds"] > CASE_SECONDS:
            problems.append(f"took {rec['seconds']:.1f} s")
    elif isinstance(expect, NumpyOrError):
        kind, ref = expect.ref(d)
        problems = (_error_problems(outs, Raises()) if kind == "error"
                    else _value_problems(outs, ref, expect.rtol))
        if kind == "error" and problems:
            problems.insert(0, f"numpy raises {ref} on this input")
    elif isinstance(expect, Either):
        problems = (_error_problems(outs, Raises()) if not outs[0]["ok"]
                    else _value_problems(outs, expect.ref(d), expect.rtol))
    else:
        problems = [f"unknown expectation {expect!r}"]
    changed = [p for p in rec["changed"] if not p.startswith(case.may_change or ("\0",))]
    if changed:
        problems.append(f"pre-existing files changed or removed: {changed}")
    if rec["leftovers"]:
        problems.append(f"temporary files left: {rec['leftovers']}")
    return problems


@pytest.mark.timeout(900)
@pytest.mark.parametrize("module,ranks,case", list(_params()))
def test_case(batches, module, ranks, case):
    base, records = batches[module, ranks]
    problems = judge(case, records[case.id], base / case.id)
    assert not problems, "\n".join(problems)

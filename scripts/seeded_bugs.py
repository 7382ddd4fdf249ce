"""Seed each bug issue 16 lists into a copy of the repository and run the tests meant to catch it.

The copy is `git archive HEAD` (the last commit, not uncommitted edits) in a temporary folder, made once; each
bug's file is put back after its run. `shared` beside it links to the repository's `../shared` (so real-data tests
find their data as usual); alreid is imported from the copy (checked). A bug counts as caught when pytest exits 1
with at least one FAILED test. Exit 0 when every bug is caught.

    .venv/bin/python scripts/seeded_bugs.py            # all of them (about 2 minutes)
    .venv/bin/python scripts/seeded_bugs.py 3 7c       # those whose label starts with 3 or 7c
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAIN = Path(__file__).resolve().parents[1]
# (label, file, original text (must occur exactly once), the bug, the tests meant to catch it)
BUGS = [
    ("1a NP3 refinement skipped in the trial loop", "alreid/harness/trial.py",
     'refined = refine_labels(pending["labels"], self.constraints, pending["z"], cfg.refine, np3_options)',
     'refined = pending["labels"]', ["tests/wiring/test_answers_reach_training.py"]),
    ("1b the trainers' refine callback ignores the answers", "alreid/harness/trial.py",
     "refine=lambda lab, feats: refine_labels(lab, self.constraints, feats, cfg.refine, np3_options),",
     "refine=lambda lab, feats: lab,", ["tests/wiring/test_answers_reach_training.py"]),
    ("1c the head trainer ignores its refined pseudo-labels", "alreid/models/head.py",
     "labels = np.asarray(refine(labels, feats), dtype=np.int64)", "labels = np.asarray(labels, dtype=np.int64)",
     ["tests/wiring/test_answers_reach_training.py"]),
    ("1d refine_labels ml_merge ignores the must-links", "alreid/clustering/refine.py",
     "g = coo_matrix((np.ones(n), (labels, k + roots)), shape=(k + n, k + n))",
     "g = coo_matrix((np.ones(n), (labels, k + np.arange(n))), shape=(k + n, k + n))",
     ["tests/wiring/test_answers_reach_training.py", "tests/clustering/test_refine_mutants.py"]),
    ("2a AAS mixture with 1 - epsilon", "alreid/samplers/aas_pools.py",
     "eps = 0.0 if mass_os <= 0 else 1.0 if mass_us <= 0 else float(epsilon)",
     "eps = 0.0 if mass_os <= 0 else 1.0 if mass_us <= 0 else 1.0 - float(epsilon)",
     ["tests/samplers/test_aas_distribution.py"]),
    ("2b flat medoid-pair probabilities", "alreid/samplers/aas.py",
     "p_os = np.clip(os_sim, 0.0, None)", "p_os = np.ones(len(os_sim))", ["tests/samplers/test_aas_distribution.py"]),
    ("2c omega_mode=sim weighs by distance, not similarity", "alreid/samplers/aas.py",
     "us_sim = pools.rowdot(x, us_pairs[:, 0], us_pairs[:, 1])",
     "us_sim = 1.0 - pools.rowdot(x, us_pairs[:, 0], us_pairs[:, 1])", ["tests/samplers/test_aas_distribution.py"]),
    ("3a NP3 exact colouring replaced by greedy", "alreid/clustering/np3.py",
     "    if n_nodes <= exact_max:\n        return exact_colouring(n_nodes, edges)",
     "    if False:\n        return exact_colouring(n_nodes, edges)", ["tests/clustering/test_np3_options.py"]),
    ("3b NP3 margin rule: least clear-cut point first", "alreid/clustering/np3.py",
     "margin = srt[:, 1] - srt[:, 0] if d.shape[1] > 1", "margin = srt[:, 0] - srt[:, 1] if d.shape[1] > 1",
     ["tests/clustering/test_np3_options.py"]),
    ("3c NP3 euclidean cost on member sums, not means", "alreid/clustering/np3.py",
     "        return m / counts[:, None]", "        return m", ["tests/clustering/test_np3_options.py"]),
    ("3d exact_colouring_max boundary off by one", "alreid/clustering/np3.py",
     "    if n_nodes <= exact_max:", "    if n_nodes < exact_max:", ["tests/clustering/test_np3_options.py"]),
    ("4 union-find roots() follows one parent step", "alreid/constraints.py",
     "            if np.array_equal(nxt, r):\n                return r",
     "            if True:\n                return r", ["tests/test_union_find.py"]),
    ("5 same-camera filtering dropped", "alreid/evaluation/metrics.py",
     "junk = gcam[gcol] == qcam[a + qrow]", "junk = np.zeros_like(gcam[gcol] == qcam[a + qrow])",
     ["tests/evaluation/test_camera_filtering.py"]),
    ("6a LBAS equal remainders: the smaller cluster first", "alreid/samplers/lbas.py",
     "order = idx[np.lexsort((idx, -sizes[idx], -(quota - base)[idx]))]",
     "order = idx[np.lexsort((idx, sizes[idx], -(quota - base)[idx]))]", ["tests/samplers/test_lbas_ties.py"]),
    ("6b FPS candidate ties: the highest index first", "alreid/samplers/fps.py",
     "return int(candidates[np.argmax(scores[candidates])])",
     "return int(candidates[len(candidates) - 1 - np.argmax(scores[candidates][::-1])])",
     ["tests/samplers/test_lbas_ties.py", "tests/samplers/test_sampler_speedups.py"]),
    ("7a hybrid memory logits times the temperature", "alreid/models/hybrid_memory.py",
     "logits = f @ self.centroids().T / self.temperature", "logits = f @ self.centroids().T * self.temperature",
     ["tests/images/test_spcl_parts.py::test_hybrid_memory_gradient_reaches_only_the_batch"]),
    ("7b evaluate_protocol searches every train image, not the gallery exemplars", "alreid/evaluation/protocol.py",
     "out = evaluate_retrieval(embeddings[q], embeddings[g], keys[q], keys[g],",
     "g = protocol.train_idx\n    out = evaluate_retrieval(embeddings[q], embeddings[g], keys[q], keys[g],",
     ["tests/evaluation/test_protocol.py"]),
    ("7c FINCH: every level above 0 gives the coarsest", "alreid/clustering/views.py",
     "return c[:, col].astype(np.int64)", "return c[:, col if col == 0 else -1].astype(np.int64)",
     ["tests/clustering/test_views.py"]),
    ("7d open-set split without test-only identities", "alreid/datasets/splits.py",
     "forced = _pick_test_only(comp, ident_rank, labelled, test_only_fraction * n_lab, rng)",
     "forced = _pick_test_only(comp, ident_rank, labelled, 0.0 * n_lab, rng)", ["tests/datasets/test_splits.py"]),
]


def run(bug: tuple[str, str, str, str, list[str]], copy: Path) -> tuple[bool, list[str], int]:
    """Seed ``bug`` into the repository copy ``copy``, run its tests, put the file back: (caught, failed tests,
    seconds)."""
    name, path, old, new, tests = bug
    f = copy / path
    text = f.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"seeded_bugs: the original text of {name!r} occurs {text.count(old)} times in {path}; "
                         "update its entry in scripts/seeded_bugs.py")
    f.write_text(text.replace(old, new))
    try:
        return _run_tests(copy, tests)
    finally:
        f.write_text(text)


def _run_tests(copy: Path, tests: list[str]) -> tuple[bool, list[str], int]:
    check = (f"import alreid, sys; assert alreid.__file__.startswith({str(copy)!r}), alreid.__file__; import pytest; "
             "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-x', *sys.argv[1:]]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no cached bytecode of a seeded file can outlive its restoration
    t0 = time.time()
    res = subprocess.run([sys.executable, "-c", check, *tests], cwd=copy, capture_output=True, text=True, env=env)
    failed = re.findall(r"^FAILED (\S+)", res.stdout, re.M)
    return res.returncode == 1 and bool(failed), failed, round(time.time() - t0)


def main(argv: list[str]) -> int:
    chosen = [b for b in BUGS if not argv or any(b[0].startswith(a) for a in argv)]
    if not chosen:
        print(f"seeded_bugs: no bug label starts with {' or '.join(argv)}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="alreid-seeded-"))
    try:
        if (MAIN.parent / "shared").exists():
            (work / "shared").symlink_to(MAIN.parent / "shared")
        copy = work / "repo"
        copy.mkdir()
        subprocess.run(f"git -C '{MAIN}' archive HEAD | tar -x -C '{copy}'", shell=True, check=True)
        caught = 0
        for bug in chosen:
            ok, failed, secs = run(bug, copy)
            caught += ok
            print(f"{'caught' if ok else 'MISSED'}  {bug[0]}: {failed[0] if failed else 'no test failed'} ({secs} s)",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{caught} of {len(chosen)} seeded bugs caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

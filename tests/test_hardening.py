"""Hardening of the proof reader, writer and CLI against an attacker who controls every byte of a
proof (issue 7): resources bounded before allocation, file types checked before opening, derived
fields derived, W_0 without optimizer state, hyperparameters that cannot overflow a replay,
deterministic bytes, and a CLI that validates its arguments and never turns a crash into a verdict.

Tests that could hang or allocate gigabytes on a regression run in a subprocess with a timeout."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from proofkit import (  # noqa: F401  (fixtures)
    BATCH,
    SIZE,
    checkpoints_of,
    honest_dir,
    load_manifest,
    patch_file,
    proof_dir,
    rewrite,
    save_manifest,
    tiny_config,
    tiny_data,
)

from polcore.cli import build_parser, main
from polcore.models import ModelSpec, build_model, count_parameters
from polcore.proof import Checkpoint, ProofError, ProofWriter, read_proof, write_proof
from polcore.proof.state import encode
from polcore.training import OptimizerConfig

TESTS = Path(__file__).parent
ROOT = TESTS.parent
CKPT0 = "checkpoints/00000000.safetensors"
CKPT8 = "checkpoints/00000008.safetensors"


def _env() -> dict[str, str]:
    return {**os.environ, "POLCORE_THREADS": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}


def _python(code: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter; a hang or a runaway allocation fails the test, not pytest."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                              check=False, timeout=timeout, env=_env(), cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s (a hang or a runaway allocation)")


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return _python("import sys; from polcore.cli import main; sys.exit(main(sys.argv[1:]))", *argv, timeout=timeout)


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---- 1. model specs sized on the meta device, parameters capped ----------------------------------

_MEASURE = """
    import resource, sys, time
    from polcore.proof import ProofError, read_proof
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        read_proof(sys.argv[1])
        print("accepted")
    except ProofError as err:
        print("refused", err.file, err.field)
    print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("kwargs", [{"depth": 8, "width": 2500}, {"depth": 6 * 100_000 + 2, "width": 1}],
                         ids=["width 2500", "depth 600002"])
def test_a_huge_model_spec_is_refused_fast_without_allocating(proof_dir, kwargs):
    manifest = load_manifest(proof_dir)
    manifest["model"] = {"name": "resnet", "kwargs": {**kwargs, "in_channels": 1, "num_classes": 10}}
    save_manifest(proof_dir, manifest)
    run = _python(_MEASURE, str(proof_dir), timeout=20)
    verdict, numbers = run.stdout.strip().splitlines()[-2:]
    seconds, rss_kib = float(numbers.split()[0]), int(numbers.split()[1])
    assert verdict == "refused manifest.json model", run.stdout + run.stderr
    assert seconds < 3 and rss_kib < 100 * 1024, (seconds, rss_kib)


def test_building_on_the_meta_device_allocates_nothing_and_cpu_bits_are_unchanged():
    meta = build_model(ModelSpec("resnet", {"depth": 8, "width": 2500}), seed=0, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters()) and count_parameters(meta) > 1e9
    # digests of build_model(spec, seed=7) on the CPU, computed before the meta path existed
    expected = {
        ModelSpec("mlp", {"in_features": 64, "hidden": 16, "num_classes": 10}):
            "0b4cce31942d26e3b4be13e9a68e22f8cb3ddc06702f73fcee80348218474e18",
        ModelSpec("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10}):
            "ef56af7b1120a5a727d0e6195dda767207e1403d79621ebadcda25282001fa19",
        ModelSpec("vggmini", {"width": 4, "stages": 2, "in_channels": 1, "input_size": 8}):
            "bb1dd2d53ff39c943e24090b35c72216c4db149684e538df294bd779786a0e9e",
    }
    for spec, digest in expected.items():
        h = hashlib.sha256()
        for key, value in build_model(spec, seed=7).state_dict().items():
            h.update(key.encode())
            h.update(value.detach().contiguous().numpy().tobytes())
        assert h.hexdigest() == digest, spec


def test_vggmini_with_absurd_stages_is_refused_without_a_huge_power_of_two():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="stages"):
        build_model(ModelSpec("vggmini", {"stages": 10**15, "input_size": 8}), seed=0, device="meta")
    assert time.perf_counter() - start < 1


def test_the_parameter_cap_of_the_reader_is_an_option(honest_dir):
    params = count_parameters(build_model(read_proof(honest_dir).config.model, seed=0))
    with pytest.raises(ProofError) as info:
        read_proof(honest_dir, max_parameters=params - 1)
    assert info.value.file == "manifest.json" and info.value.field == "model"
    assert read_proof(honest_dir, max_parameters=params).layout.parameters


# ---- 2. manifest proportionate: lrs.npy, checkpoint_sha256.txt, caps -----------------------------


def test_the_manifest_holds_no_per_step_data(honest_dir):
    manifest = load_manifest(honest_dir)
    proof = read_proof(honest_dir)
    assert manifest["schema_version"] == 2 and manifest["schedule"]["steps"] == 24
    assert "lrs" not in manifest["schedule"] and "checkpoints" not in manifest
    assert set(manifest["sha256"]) == {"indices.npy", "lrs.npy", "batch_sha256.txt", "checkpoint_sha256.txt"}
    lrs = np.load(honest_dir / "lrs.npy", allow_pickle=False)
    assert lrs.dtype == np.float64 and lrs.shape == (24,) and tuple(lrs) == proof.config.lrs
    lines = (honest_dir / "checkpoint_sha256.txt").read_text().splitlines()
    assert lines == [hashlib.sha256((honest_dir / f"checkpoints/{s:08d}.safetensors").read_bytes()).hexdigest()
                     for s in proof.checkpoint_steps()]
    assert (honest_dir / "manifest.json").stat().st_size < 4096


def test_an_oversized_manifest_is_refused_before_parsing(proof_dir):
    (proof_dir / "manifest.json").write_bytes(b"[" * (1 << 20) + b"]" * (1 << 20))
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.file == "manifest.json" and info.value.field == "size"


def test_the_largest_legal_manifest_fits_the_cap(honest_dir, tmp_path):
    """64 meta entries of 500 astral characters (12 bytes each as JSON escapes) still fit in 1 MiB."""
    proof = read_proof(honest_dir)
    meta = {f"k{i:03d}" + "x" * 124: "\U0001F600" * 500 for i in range(64)}
    config = dataclasses.replace(proof.config, meta=meta)
    write_proof(tmp_path / "p", config, checkpoints_of(honest_dir), proof.indices, proof.batch_hashes)
    assert read_proof(tmp_path / "p").config.meta == meta


def test_the_index_table_is_bounded_before_it_is_read(honest_dir):
    with pytest.raises(ProofError) as info:
        read_proof(honest_dir, max_index_entries=24 * BATCH - 1)
    assert info.value.file == "manifest.json" and info.value.field.startswith("schedule")
    assert read_proof(honest_dir, max_index_entries=24 * BATCH).indices.shape == (24, BATCH)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("data, field", [
    (_npy(np.full(24, -0.1)), "[0]"),
    (_npy(np.r_[np.full(5, 0.1), np.nan, np.full(18, 0.1)]), "[5]"),
    (_npy(np.full(24, 1e300)), "[0]"),
    (_npy(np.full(24, 0.1, dtype=np.float32)), "header"),
    (_npy(np.full(23, 0.1)), "header"),
    (_npy(np.array([{"lr": 0.1}] * 24, dtype=object)), "header"),
    (_npy(np.full(24, 0.1))[:-8], "data"),
    (_npy(np.full(24, 0.1)) + b"\0" * 8, "data"),
], ids=["negative", "nan", "1e300", "float32", "short", "pickle", "truncated", "trailing"])
def test_bad_learning_rates_are_refused_naming_lrs_npy(proof_dir, data, field):
    patch_file(proof_dir, "lrs.npy", data)
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.file == "lrs.npy" and info.value.field == field, str(info.value)


def test_checkpoint_hashes_have_one_line_per_checkpoint(proof_dir):
    lines = (proof_dir / "checkpoint_sha256.txt").read_text().splitlines()
    patch_file(proof_dir, "checkpoint_sha256.txt", "".join(h + "\n" for h in lines[:-1]).encode())
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.file == "checkpoint_sha256.txt" and info.value.field == "lines"


# ---- 3. file types checked before any open; a symlinked root is fine ------------------------------


@pytest.mark.parametrize("name", ["manifest.json", "checkpoints/00000004.safetensors", "lrs.npy"])
def test_a_fifo_in_the_proof_is_refused_without_hanging(proof_dir, name):
    (proof_dir / name).unlink()
    os.mkfifo(proof_dir / name)
    for command in ("inspect", "verify"):
        start = time.perf_counter()
        run = _cli(command, str(proof_dir), "--device", "cpu", timeout=60) if command == "verify" \
            else _cli(command, str(proof_dir), timeout=60)
        assert run.returncode == 2 and name in _one_line(run.stderr), run.stderr
        print(f"{command} of a FIFO {name}: exit 2 in {time.perf_counter() - start:.2f} s (with interpreter start)")


def test_a_symlinked_proof_root_is_read(honest_dir, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(honest_dir, target_is_directory=True)
    assert read_proof(link).config == read_proof(honest_dir).config
    assert main(["inspect", str(link)]) == 0 and "valid" in capsys.readouterr().out


def test_a_link_inside_the_proof_is_still_refused(proof_dir, tmp_path):
    target = tmp_path / "elsewhere"
    (proof_dir / "checkpoints").rename(target)
    (proof_dir / "checkpoints").symlink_to(target, target_is_directory=True)
    with pytest.raises(ProofError, match="link"):
        read_proof(proof_dir)


# ---- 4. steps_per_epoch derived ---------------------------------------------------------------------


@pytest.mark.parametrize("claimed", [16, 5_000_000])
def test_steps_per_epoch_must_be_derived_from_dataset_and_batch(claimed):
    config = tiny_config(tiny_data())
    assert config.steps_per_epoch == SIZE // BATCH
    with pytest.raises(ProofError) as info:
        dataclasses.replace(config, steps_per_epoch=claimed)
    assert info.value.field == "schedule.steps_per_epoch"


def test_a_manifest_claiming_another_epoch_length_is_invalid(proof_dir):
    manifest = load_manifest(proof_dir)
    manifest["schedule"].update(steps_per_epoch=24, epochs=1)
    save_manifest(proof_dir, manifest)
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.field == "schedule.steps_per_epoch"


# ---- 5. W_0 carries no optimizer state ---------------------------------------------------------


def test_momentum_at_step_0_is_refused_by_the_reader(proof_dir, honest_dir):
    proof = read_proof(honest_dir)
    first = proof.checkpoint(0)
    names = proof.layout.parameters
    planted = Checkpoint(0, first.model, {n: torch.full_like(first.model[n], 3.0) for n in names})
    patch_file(proof_dir, CKPT0, encode(planted))
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.file == CKPT0 and info.value.field.startswith("momentum/"), str(info.value)


def test_momentum_at_step_0_is_refused_by_the_writer(honest_dir, tmp_path):
    proof = read_proof(honest_dir)
    first = proof.checkpoint(0)
    planted = Checkpoint(0, first.model, {n: torch.zeros_like(first.model[n]) for n in proof.layout.parameters})
    with ProofWriter(tmp_path / "p", proof.config) as writer, pytest.raises(ProofError) as info:
        writer.add(planted)
    assert "momentum/" in str(info.value)


def test_a_checkpoint_after_step_0_without_momentum_is_refused(proof_dir, honest_dir):
    """With momentum > 0, an honest run has buffers after every step: dropping them resets the state."""
    eight = read_proof(honest_dir).checkpoint(8)
    patch_file(proof_dir, CKPT8, encode(Checkpoint(8, eight.model, None)))
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.file == CKPT8 and info.value.field.startswith("momentum/"), str(info.value)


# ---- 6. hyperparameters that cannot overflow a replay --------------------------------------------


@pytest.mark.parametrize("change, field", [
    ({"weight_decay": 1e300}, "optimizer.weight_decay"),
    ({"weight_decay": 1.5}, "optimizer.weight_decay"),
    ({"momentum": 1.0}, "optimizer.momentum"),
    ({"momentum": -0.1}, "optimizer.momentum"),
])
def test_optimizer_ranges(change, field):
    config = tiny_config(tiny_data())
    with pytest.raises(ProofError) as info:
        dataclasses.replace(config, optimizer=dataclasses.replace(config.optimizer, **change))
    assert info.value.field == field


@pytest.mark.parametrize("lr", [1e300, 101.0])
def test_learning_rates_above_the_range_are_refused(lr):
    config = tiny_config(tiny_data())
    with pytest.raises(ProofError, match=r"\[0\]"):
        dataclasses.replace(config, lrs=[lr] * config.steps)


def test_lr_times_weight_decay_above_one_is_refused():
    config = tiny_config(tiny_data())
    with pytest.raises(ProofError) as info:
        dataclasses.replace(config, lrs=[50.0] * config.steps,
                            optimizer=OptimizerConfig(momentum=0.9, weight_decay=0.1))
    assert info.value.field == "optimizer.weight_decay"


@pytest.mark.parametrize("value", ["1e300", "10" * 200, "-1e-300"])
def test_a_huge_weight_decay_in_the_manifest_is_invalid_not_a_crash(proof_dir, value, capsys):
    text = (proof_dir / "manifest.json").read_text()
    (proof_dir / "manifest.json").write_text(text.replace('"weight_decay": 0.0005', f'"weight_decay": {value}'))
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.field == "optimizer.weight_decay"
    assert main(["verify", str(proof_dir), "--device", "cpu"]) == 2
    _one_line(capsys.readouterr().err)


def test_no_manifest_number_overflows_float(proof_dir):
    manifest = load_manifest(proof_dir)
    manifest["optimizer"]["momentum"] = 10**400
    (proof_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.field == "optimizer.momentum"


# ---- 7. deterministic bytes ------------------------------------------------------------------------

_PROVE = """
    import sys
    from pathlib import Path
    from proofkit import make_proof
    make_proof(Path(sys.argv[1]))
"""


def test_two_runs_of_the_same_seed_write_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        run = _python(_PROVE, str(tmp_path / name), timeout=300)
        assert run.returncode == 0, run.stderr
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for name in files:
        if name == "manifest.json":  # the prover records its wall time: the one field that may differ
            ma, mb = load_manifest(a), load_manifest(b)
            ma["meta"].pop("train_seconds"), mb["meta"].pop("train_seconds")
            assert ma == mb
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_checkpoint_encoding_is_deterministic_within_a_process(honest_dir):
    checkpoint = read_proof(honest_dir).checkpoint(8)
    assert len({encode(checkpoint) for _ in range(20)}) == 1


# ---- 8. the CLI validates its arguments and never turns a crash into a verdict ---------------------


@pytest.mark.parametrize("args, option", [
    (["--init-alpha", "0"], "--init-alpha"),
    (["--init-alpha", "1.5"], "--init-alpha"),
    (["--init-alpha", "nan"], "--init-alpha"),
    (["--seed", "-1"], "--seed"),
    (["--q", "0"], "--q"),
    (["--momentum-rtol", "nan"], "--momentum-rtol"),
    (["--momentum-rtol", "-1"], "--momentum-rtol"),
    (["--report", "/nonexistent-polcore-dir/report.json"], "--report"),
    (["--max-parameters", "0"], "--max-parameters"),
])
def test_verify_arguments_are_validated_before_any_work(honest_dir, args, option, capsys, monkeypatch):
    import polcore.commands.proof as commands

    def no_work(*_a, **_k):
        raise AssertionError("the proof was read before the arguments were checked")

    monkeypatch.setattr(commands, "read_proof", no_work)
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(honest_dir), "--device", "cpu", *args])
    assert exit_info.value.code == 2
    assert option in _one_line(capsys.readouterr().err)


def test_a_report_into_a_directory_that_is_not_writable_is_refused_up_front(honest_dir, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(SystemExit) as info:
            main(["verify", str(honest_dir), "--report", str(locked / "r.json")])
        assert info.value.code == 2 and "--report" in _one_line(capsys.readouterr().err)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--epochs", "0"], ["--k", "0"], ["--lr", "nan"],
                                  ["--batch-size", "0"], ["--train-size", "-3"]])
def test_prove_arguments_are_validated(tmp_path, args, capsys):
    with pytest.raises(SystemExit) as info:
        main(["prove", "--out", str(tmp_path / "p"), *args])
    assert info.value.code == 2 and args[0] in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("command", ["verify", "inspect"])
def test_an_unexpected_exception_is_exit_2_with_one_line(honest_dir, command, capsys, monkeypatch):
    import polcore.commands.proof as commands

    def boom(*_a, **_k):
        raise RuntimeError("boom in the reader")

    monkeypatch.setattr(commands, "read_proof", boom)
    assert main([command, str(honest_dir)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "RuntimeError" in err and "boom in the reader" in err


def test_the_random_policy_seed_defaults_to_none():
    args = build_parser().parse_args(["verify", "some-proof"])
    assert args.seed is None


def test_inspect_reports_index_coverage(honest_dir, tmp_path, capsys):
    single = rewrite(honest_dir, tmp_path / "single", indices=lambda i: np.zeros_like(i))
    assert main(["inspect", str(single)]) == 0
    out = capsys.readouterr().out
    assert f"1 of {SIZE} examples" in out
    assert main(["inspect", str(honest_dir)]) == 0
    assert f"{SIZE} of {SIZE} examples" in capsys.readouterr().out

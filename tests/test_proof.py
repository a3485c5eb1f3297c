"""The proof format: what the prover writes, atomic writing, and a reader that refuses bad input
with one exception type naming the file and the field (directly and through the CLI)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from proofkit import (  # noqa: F401  (fixtures)
    BATCH,
    K,
    SIZE,
    checkpoints_of,
    honest_dir,
    load_manifest,
    make_proof,
    patch_file,
    proof_dir,
    save_manifest,
    tiny_config,
    tiny_data,
)

import polcore.prover
from polcore.cli import main
from polcore.data import batch_sha256, get_batch, index_schedule
from polcore.proof import Checkpoint, ProofError, ProofWriter, read_proof, write_proof
from polcore.prover import hash_batches

CKPT = "checkpoints/00000004.safetensors"


def test_the_prover_records_indices_hashes_lrs_and_optimizer_state(honest_dir):
    proof = read_proof(honest_dir)
    config = proof.config
    data = tiny_data()
    assert config.steps == 24 and config.k == K and proof.checkpoint_steps() == [0, 4, 8, 12, 16, 20, 24]
    assert np.array_equal(proof.indices, index_schedule(SIZE, BATCH, 3, seed=0))
    for step in (0, 13, 23):
        assert proof.batch_hashes[step] == batch_sha256(*get_batch(data, proof.indices[step]))
    assert config.lrs == tuple(tiny_config(data).lrs)
    assert config.dataset.fingerprint == data.fingerprint
    assert proof.checkpoint(0).momentum is None  # no SGD buffer before the first step
    later = proof.checkpoint(8)
    assert set(later.momentum) == set(proof.layout.parameters)
    assert config.meta["train_seconds"] >= 0
    assert sorted(p.name for p in honest_dir.iterdir()) == ["batch_sha256.txt", "checkpoint_sha256.txt", "checkpoints",
                                                             "indices.npy", "lrs.npy", "manifest.json"]


def test_a_rewritten_proof_reads_back_identically(honest_dir, tmp_path):
    proof = read_proof(honest_dir)
    before = checkpoints_of(honest_dir)
    assert hash_batches(tiny_data(), proof.indices, proof.config) == list(proof.batch_hashes)
    write_proof(tmp_path / "copy", proof.config, before, proof.indices, proof.batch_hashes)
    again = read_proof(tmp_path / "copy")
    assert again.config == proof.config and again.batch_hashes == proof.batch_hashes
    for a, b in zip(before, checkpoints_of(tmp_path / "copy")):
        assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


# ---- atomic writing ----------------------------------------------------------------------------


def test_an_existing_directory_is_never_overwritten(honest_dir, tmp_path):
    proof = read_proof(honest_dir)
    target = tmp_path / "mine"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_proof(target, proof.config, checkpoints_of(honest_dir), proof.indices, proof.batch_hashes)
    with pytest.raises(FileExistsError, match="not a proof directory"):
        write_proof(target, proof.config, checkpoints_of(honest_dir), proof.indices, proof.batch_hashes,
                    replace=True)
    assert (target / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_replace_swaps_in_a_new_proof(proof_dir):
    proof = read_proof(proof_dir)
    write_proof(proof_dir, proof.config, checkpoints_of(proof_dir), proof.indices, proof.batch_hashes, replace=True)
    assert read_proof(proof_dir).config == proof.config
    assert sorted(p.name for p in proof_dir.parent.iterdir()) == ["proof"]


def test_an_interrupted_prover_leaves_nothing(tmp_path, monkeypatch):
    original = polcore.prover.ProofRecorder.__call__

    def interrupt(self, record):
        if record.step == 9:
            raise KeyboardInterrupt
        original(self, record)

    monkeypatch.setattr(polcore.prover.ProofRecorder, "__call__", interrupt)
    with pytest.raises(KeyboardInterrupt):
        make_proof(tmp_path / "proof")
    assert list(tmp_path.iterdir()) == []


def test_the_writer_refuses_what_the_reader_would(honest_dir, tmp_path):
    proof = read_proof(honest_dir)
    first, second = checkpoints_of(honest_dir)[:2]
    with ProofWriter(tmp_path / "p", proof.config) as writer:
        with pytest.raises(ProofError, match="next checkpoint must be step 0"):
            writer.add(second)
        bad = Checkpoint(0, {k: v.clone().fill_(float("nan")) for k, v in first.model.items()})
        with pytest.raises(ProofError, match="NaN"):
            writer.add(bad)
        writer.add(first)
        with pytest.raises(ProofError, match="1 of 7 checkpoints"):
            writer.commit(proof.indices, proof.batch_hashes)
    assert list(tmp_path.iterdir()) == []


# ---- invalid proofs: one exception type naming file and field ------------------------------------


def _tensors(path: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safetensors.safe_open(path / name, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _edit_tensor(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        tensors, meta = _tensors(path, CKPT)
        tensors["model/1.weight"] = edit(tensors["model/1.weight"])
        patch_file(path, CKPT, safetensors.torch.save(tensors, metadata=meta))

    return apply


def _edit_manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        manifest = load_manifest(path)
        edit(manifest)
        save_manifest(path, manifest)

    return apply


def _set_nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[0, 0] = float("nan")
    return t


def _flip_bit(path: Path) -> None:
    data = bytearray((path / CKPT).read_bytes())
    data[len(data) // 2] ^= 0x10
    (path / CKPT).write_bytes(bytes(data))


def _pickled_indices(path: Path) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"step": 0}], dtype=object), allow_pickle=True)
    patch_file(path, "indices.npy", buf.getvalue())


def _symlink(path: Path) -> None:
    os.symlink("/etc/passwd", path / "checkpoints" / "link.safetensors")


INVALID: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (tamper, file named in the message, field named in the message)
    "truncated safetensors": (lambda p: (p / CKPT).write_bytes((p / CKPT).read_bytes()[:-7]), CKPT, "sha256"),
    "truncated safetensors, manifest hash updated": (
        lambda p: patch_file(p, CKPT, (p / CKPT).read_bytes()[:-7]), CKPT, "-"),
    "bit-flipped safetensors": (_flip_bit, CKPT, "sha256"),
    "NaN in a tensor": (_edit_tensor(_set_nan), CKPT, "model/1.weight"),
    "wrong shape": (_edit_tensor(lambda t: t[:, :-1].contiguous()), CKPT, "model/1.weight"),
    "tensor missing": (lambda p: patch_file(p, CKPT, safetensors.torch.save(
        {k: v for k, v in _tensors(p, CKPT)[0].items() if k != "model/1.bias"}, metadata=_tensors(p, CKPT)[1])),
        CKPT, "model/1.bias"),
    "checkpoint of another step": (lambda p: patch_file(p, CKPT, (p / "checkpoints/00000008.safetensors").read_bytes()),
                                   CKPT, "__metadata__"),
    "missing file": (lambda p: (p / CKPT).unlink(), CKPT, "missing"),
    "extra file": (lambda p: (p / "notes.txt").write_text("hi"), "notes.txt", "not listed"),
    "symbolic link": (_symlink, "checkpoints/link.safetensors", "symbolic link"),
    "manifest field of the wrong type": (_edit_manifest(lambda m: m["schedule"].update(k="4")), "manifest.json",
                                         "schedule.k"),
    "negative learning rate": (lambda p: patch_file(p, "lrs.npy", _npy(np.r_[np.full(3, 0.1), -1.0, np.full(20, 0.1)],
                                                                     np.float64)), "lrs.npy", "[3]"),
    "learning rates of another length": (lambda p: patch_file(p, "lrs.npy", _npy(np.full(25, 0.1), np.float64)),
                                         "lrs.npy", "header"),
    "manifest field missing": (_edit_manifest(lambda m: m["dataset"].pop("fingerprint")), "manifest.json",
                               "dataset.fingerprint"),
    "unknown manifest field": (_edit_manifest(lambda m: m.update(extra=1)), "manifest.json", "extra"),
    "file name with ..": (_edit_manifest(lambda m: m["sha256"].update({"../../etc/x.npy": "0" * 64})),
                          "manifest.json", "unknown field"),
    "SHA-256 of a file missing": (_edit_manifest(lambda m: m["sha256"].pop("lrs.npy")), "manifest.json",
                                  "sha256.lrs.npy"),
    "k changed": (_edit_manifest(lambda m: m["schedule"].update(k=3)), "checkpoints/00000003.safetensors",
                  "missing"),
    "a checkpoint hash line missing": (lambda p: patch_file(p, "checkpoint_sha256.txt", "".join(
        line + "\n" for line in (p / "checkpoint_sha256.txt").read_text().splitlines()[:-1]).encode()),
        "checkpoint_sha256.txt", "lines"),
    "checkpoint hash wrong": (lambda p: patch_file(p, "checkpoint_sha256.txt", "".join(
        "0" * 64 + "\n" for _ in (p / "checkpoint_sha256.txt").read_text().splitlines()).encode()),
        "checkpoints/00000000.safetensors", "sha256"),
    "unknown model": (_edit_manifest(lambda m: m["model"].update(name="os.system")), "manifest.json", "model"),
    "non-JSON manifest": (lambda p: (p / "manifest.json").write_text("{'schema': pol"), "manifest.json", "-"),
    "NaN in the manifest": (lambda p: (p / "manifest.json").write_text(
        (p / "manifest.json").read_text().replace('"momentum": 0.9', '"momentum": NaN')), "manifest.json", "-"),
    "pickled indices": (_pickled_indices, "indices.npy", "header"),
    "index outside the dataset": (lambda p: patch_file(p, "indices.npy", _npy(np.full((24, BATCH), SIZE))),
                                  "indices.npy", "[0, 0]"),
    "bad hash line": (lambda p: patch_file(p, "batch_sha256.txt", b"xyz\n" * 24), "batch_sha256.txt", "line 1"),
}


def _npy(array: np.ndarray, dtype: type = np.int64) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array.astype(dtype))
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_proof_raises_one_error_naming_file_and_field(proof_dir, case):
    tamper, file, field = INVALID[case]
    tamper(proof_dir)
    with pytest.raises(ProofError) as info:
        read_proof(proof_dir)
    assert info.value.file == file and field in f"{info.value.field}: {info.value.problem}", str(info.value)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_the_cli_refuses_an_invalid_proof_with_exit_2_and_one_line(proof_dir, case, capsys, tmp_path):
    tamper, file, _ = INVALID[case]
    tamper(proof_dir)
    report = tmp_path / "report.json"
    for argv in (["verify", str(proof_dir), "--report", str(report)], ["inspect", str(proof_dir)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and file in err and "Traceback" not in err
    assert json.loads(report.read_text())["decision"] == "invalid"


def test_the_cli_inspects_a_valid_proof(honest_dir, capsys):
    assert main(["inspect", str(honest_dir)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "mlp" in out and "7 checkpoints" in out


def test_no_pickle_in_the_proof_code():
    root = Path(polcore.prover.__file__).parent
    sources = [root / "prover.py", *root.joinpath("proof").glob("*.py"), *root.joinpath("verify").glob("*.py")]
    for source in sources:
        text = source.read_text()
        assert not re.search(r"torch\.(load|save)\(|import pickle|pickle\.loads?\(", text), source

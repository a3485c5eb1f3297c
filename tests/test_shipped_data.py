"""A proof that ships its training data: format, validation, replay from it, the data-distance
check, 8-bit quantisation, and the "redraw" replay that emulates the papers' augmentation noise."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from proofkit import checkpoints_of, make_proof, tiny_config, tiny_data
from safetensors.torch import save as safetensors_save

from polcore.attacks.base import write_spoof
from polcore.cli import main
from polcore.data import TensorDataset, quantise_uint8
from polcore.proof import ProofError, read_proof, write_proof
from polcore.proof.manifest import DATA_FILE
from polcore.proof.storage import patch_proof_file
from polcore.prover import hash_batches, prove, start_run
from polcore.verify import All, Calibrated, Verifier
from polcore.verify import data_distance as dd


def _ship(src: Path, dst: Path, data: TensorDataset) -> Path:
    proof = read_proof(src)
    write_proof(dst, proof.config, checkpoints_of(src), proof.indices, data=data)
    return dst


@pytest.fixture(scope="module")
def honest(tmp_path_factory) -> Path:
    return make_proof(tmp_path_factory.mktemp("honest") / "proof")


@pytest.fixture(scope="module")
def shipped(honest, tmp_path_factory) -> Path:
    return _ship(honest, tmp_path_factory.mktemp("shipped") / "proof", tiny_data())


def _header(path: Path) -> dict:
    raw = (path / DATA_FILE).read_bytes()
    return json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])


def test_honest_proof_with_shipped_data_verifies_from_it(shipped):
    proof = read_proof(shipped)
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert manifest["dataset"]["shipped"] is True and manifest["dataset"]["name"] == "digits"
    assert DATA_FILE in manifest["sha256"]
    data = proof.shipped_data()
    assert data is not None and torch.equal(data.x, tiny_data().x) and torch.equal(data.y, tiny_data().y)
    assert _header(shipped)["x"]["dtype"] == "F32"  # digits are multiples of 1/16, not of 1/255
    report = Verifier(policy=All()).verify_path(shipped)
    assert report.accepted and report.shipped_data, report.summary()
    assert max(r.distances["l2"] for r in report.intervals) == 0.0


def test_a_proof_without_data_is_unchanged(honest, shipped):
    manifest = json.loads((honest / "manifest.json").read_text())
    assert "shipped" not in manifest["dataset"] and DATA_FILE not in manifest["sha256"]
    proof = read_proof(honest)
    assert not proof.ships_data and proof.shipped_data() is None
    report = Verifier().verify_path(honest)
    assert report.accepted and report.shipped_data is False and report.data_distance is None


def test_shipped_data_replaces_the_callers_data(shipped):
    """The shipped data is what the prover claims it trained on: replay uses it even when the
    caller hands other data (that becomes the reference the distances are measured against)."""
    other = tiny_data()
    other = TensorDataset(other.name, torch.rand_like(other.x), other.y, other.num_classes)
    report = Verifier().verify(read_proof(shipped), other)
    assert report.accepted and report.data_distance["l2"]["max"] > 0


def test_8bit_data_is_stored_as_uint8_and_read_back_exactly(honest, tmp_path):
    data = quantise_uint8(tiny_data())
    assert torch.all(data.x * 255 == torch.round(data.x * 255))
    assert (data.x - tiny_data().x).abs().max() <= 0.5 / 255 + 1e-7
    assert torch.equal(quantise_uint8(data).x, data.x)  # idempotent
    proof = read_proof(honest)
    path = tmp_path / "u8"
    # the honest checkpoints were trained on other bytes: written, readable, and replayed inexactly
    write_proof(path, proof.config, checkpoints_of(honest), proof.indices, data=data)
    assert _header(path)["x"]["dtype"] == "U8"
    back = read_proof(path).shipped_data()
    assert torch.equal(back.x, data.x) and back.fingerprint == data.fingerprint
    report = Verifier(policy=All(), threshold=Calibrated()).verify_path(path)
    assert min(r.distances["l2"] for r in report.intervals) > 0
    assert report.decision == "rejected" and "replay" in report.reason_codes


def test_write_spoof_ships_data_with_its_own_indices(honest, tmp_path):
    proof = read_proof(honest)
    data = tiny_data(64)
    indices = proof.indices % 64  # the attacker's own (smaller) data, every step still a batch
    path = write_spoof(tmp_path / "s", proof, checkpoints_of(honest), creator="test.spoof", data=data,
                       indices=indices)
    spoof = read_proof(path)
    assert spoof.config.dataset.size == 64 and spoof.config.steps_per_epoch == 64 // spoof.config.batch_size
    assert list(spoof.batch_hashes) == hash_batches(data, indices, spoof.config)
    with pytest.raises(ValueError, match="batch hashes"):
        write_spoof(tmp_path / "t", proof, checkpoints_of(honest), creator="test.spoof", indices=indices)


# ---- tampered data.safetensors: invalid, never a crash -------------------------------------------------------------


def _raw(x: torch.Tensor, y: torch.Tensor, **extra: torch.Tensor) -> bytes:
    return safetensors_save({"x": x.contiguous(), "y": y.contiguous(), **extra})


def _with_header(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + payload


_D = tiny_data()
_X, _Y = _D.x, _D.y
_N = len(_Y)
_BAD = {
    "x float64": _raw(_X.double(), _Y),
    "y int32": _raw(_X, _Y.int()),
    "x int64": _raw(_X.long(), _Y),
    "fewer examples": _raw(_X[:-1], _Y[:-1]),
    "input shape the model does not take": _raw(torch.zeros(_N, 1, 9, 9), _Y),
    "NaN": _raw(torch.where(torch.arange(_X.numel()).reshape(_X.shape) == 5, math.nan, _X), _Y),
    "infinity": _raw(torch.where(torch.arange(_X.numel()).reshape(_X.shape) == 5, math.inf, _X), _Y),
    "label 10": _raw(_X, torch.where(torch.arange(_N) == 3, 10, _Y)),
    "label -1": _raw(_X, torch.where(torch.arange(_N) == 3, -1, _Y)),
    "extra tensor": _raw(_X, _Y, z=torch.zeros(1)),
    "metadata": safetensors_save({"x": _X.contiguous(), "y": _Y.contiguous()}, metadata={"a": "b"}),
    "other data (fingerprint)": _raw(_X * 0.5, _Y),
    "header longer than the file": (10**9).to_bytes(8, "little") + b"{}",
    "header of 1 MB": _with_header({"x": {"dtype": "F32", "shape": [_N, 64], "data_offsets": [0, _N * 256]},
                                    "pad": "a" * (1 << 20)}, b""),
    "claimed 2^40 examples": _with_header({"x": {"dtype": "U8", "shape": [2**40, 1, 8, 8], "data_offsets": [0, 2**46]},
                                           "y": {"dtype": "I64", "shape": [2**40], "data_offsets": [2**46, 2**46 + 2**43]}},
                                          b"\0" * 64),
    "offsets past the data": _with_header({"x": {"dtype": "F32", "shape": [_N, 1, 8, 8], "data_offsets": [0, _N * 256]},
                                           "y": {"dtype": "I64", "shape": [_N], "data_offsets": [_N * 256, _N * 264]}},
                                          b"\0" * 16),
    "overlapping tensors": _with_header({"x": {"dtype": "F32", "shape": [_N, 1, 8, 8], "data_offsets": [0, _N * 256]},
                                         "y": {"dtype": "I64", "shape": [_N], "data_offsets": [0, _N * 8]}},
                                        b"\0" * (_N * 264)),
    "not JSON": (5).to_bytes(8, "little") + b"{{{{{",
    "empty": b"",
}


@pytest.mark.parametrize("name", list(_BAD))
def test_tampered_data_file_is_invalid(shipped, tmp_path, name):
    path = tmp_path / "p"
    _copy(shipped, path)
    patch_proof_file(path, DATA_FILE, _BAD[name])  # the attacker refreshes the manifest's SHA-256
    with pytest.raises(ProofError):
        read_proof(path)
    report = Verifier().verify_path(path)
    assert report.decision == "invalid", (name, report.summary())
    assert "failed unexpectedly" not in report.summary(), report.summary()


def _copy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)


def test_changed_bytes_fail_the_manifest_hash(shipped, tmp_path):
    path = tmp_path / "p"
    _copy(shipped, path)
    raw = bytearray((path / DATA_FILE).read_bytes())
    raw[-1] ^= 1
    (path / DATA_FILE).write_bytes(bytes(raw))
    with pytest.raises(ProofError, match="sha256"):
        read_proof(path)


def test_manifest_and_file_must_agree_on_shipping(shipped, honest, tmp_path):
    missing = tmp_path / "missing"
    _copy(shipped, missing)
    (missing / DATA_FILE).unlink()
    with pytest.raises(ProofError, match="missing"):
        read_proof(missing)
    stray = tmp_path / "stray"
    _copy(honest, stray)
    (stray / DATA_FILE).write_bytes(_raw(_X, _Y))
    with pytest.raises(ProofError, match="not listed"):
        read_proof(stray)
    explicit_false = tmp_path / "false"
    _copy(honest, explicit_false)
    manifest = json.loads((explicit_false / "manifest.json").read_text())
    manifest["dataset"]["shipped"] = False
    (explicit_false / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ProofError, match="shipped"):
        read_proof(explicit_false)


def test_data_file_size_is_bounded_before_reading(shipped):
    with pytest.raises(ProofError, match="more than the 1000"):
        read_proof(shipped, max_data_bytes=1000)


def test_cli_verifies_and_inspects_a_proof_that_ships_data(shipped, tmp_path, capsys):
    assert main(["inspect", str(shipped)]) == 0
    assert "shipped in the proof" in capsys.readouterr().out
    report = tmp_path / "r.json"
    assert main(["verify", str(shipped), "--device", "cpu", "--reference-data", "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["shipped_data"] is True and doc["data_distance"]["linf"]["max"] == 0.0
    bad = tmp_path / "bad"
    _copy(shipped, bad)
    patch_proof_file(bad, DATA_FILE, _BAD["label 10"])
    assert main(["verify", str(bad), "--device", "cpu"]) == 2


# ---- the data-distance check ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory) -> tuple[Path, TensorDataset]:
    """An honest proof trained on digits with 5 examples moved by 0.2 in one pixel."""
    data = tiny_data()
    x = data.x.clone()
    x[:5, 0, 3, 3] += 0.2
    moved = TensorDataset("digits", x, data.y, data.num_classes)
    config = tiny_config(moved)
    model, optimizer, indices = start_run(config, moved, seed=0)
    path = tmp_path_factory.mktemp("perturbed") / "proof"
    prove(path, model=model, optimizer=optimizer, data=moved, config=config, indices=indices)
    return _ship(path, path.parent / "shipped", moved), moved


def test_data_distance_reported_and_bounded(perturbed):
    path, _ = perturbed
    reference = tiny_data()
    report = Verifier(reference_data=reference).verify_path(path)
    dist = report.data_distance
    assert report.accepted and dist["compared"] == len(np.unique(read_proof(path).indices))
    assert dist["linf"]["max"] == pytest.approx(0.2, abs=1e-6) and dist["l2"]["max"] <= 0.2 + 1e-6
    assert dist["exact_matches"] >= dist["compared"] - 5
    loose = Verifier(reference_data=reference, max_data_distance=0.25).verify_path(path)
    assert loose.accepted and loose.data_distance["fraction_beyond"] == 0.0
    tight = Verifier(reference_data=reference, max_data_distance=0.1).verify_path(path)
    assert tight.decision == "rejected" and tight.reason_codes == ["data"], tight.summary()
    assert 0 < tight.data_distance["fraction_beyond"] <= 5 / dist["compared"]
    assert main(["verify", str(path), "--device", "cpu", "--max-data-distance", "0.1"]) == 1


def test_nearest_distances_match_brute_force_in_small_blocks(monkeypatch):
    monkeypatch.setattr(dd, "_BLOCK_ELEMENTS", 64 * 3)  # many blocks each way
    monkeypatch.setattr(dd, "_ROWS", 7)
    gen = torch.Generator().manual_seed(0)
    ref = TensorDataset("r", torch.rand(50, 1, 2, 3, generator=gen), torch.zeros(50, dtype=torch.int64), 2)
    x = torch.cat([torch.rand(20, 1, 2, 3, generator=gen), ref.x[:5] + 1e-4, ref.x[5:8]])
    shipped = TensorDataset("s", x, torch.zeros(len(x), dtype=torch.int64), 2)
    found = dd.nearest_distances(shipped, ref)
    diff = shipped.x.reshape(len(x), 1, -1).double() - ref.x.reshape(1, 50, -1).double()
    assert np.allclose(found.nearest["l2"], diff.norm(dim=2).min(dim=1).values.numpy(), atol=1e-6)
    assert np.allclose(found.nearest["linf"], diff.abs().amax(dim=2).min(dim=1).values.numpy(), atol=1e-7)
    assert found.exact_matches == 3 and np.all(found.nearest["linf"][20:25] > 5e-5)
    other = TensorDataset("o", torch.rand(4, 6), torch.zeros(4, dtype=torch.int64), 2)
    assert not dd.nearest_distances(other, ref).comparable


def _brute(shipped: TensorDataset, ref: TensorDataset) -> dict[str, np.ndarray]:
    diff = shipped.x.reshape(len(shipped), 1, -1).double() - ref.x.reshape(1, len(ref), -1).double()
    return {"l2": diff.norm(dim=2).min(dim=1).values.numpy(), "linf": diff.abs().amax(dim=2).min(dim=1).values.numpy()}


@pytest.mark.parametrize("kind", ["perturbed", "ties", "collinear", "uniform"])
def test_the_gram_shortcut_only_skips_pairs_that_cannot_be_nearest(kind, monkeypatch):
    """The matrix-product shortcut picks candidates; the answers must be the brute force's, on the
    data that stresses it: tiny perturbations (rounding), exact ties, nearly collinear rows, and
    data spread evenly (nothing can be skipped)."""
    monkeypatch.setattr(dd, "_ROWS", 64)
    gen = torch.Generator().manual_seed(1)
    ref_x = {"perturbed": torch.rand(300, 3, 8, 8, generator=gen),
             "ties": torch.rand(300, 3, 8, 8, generator=gen).round(),
             "collinear": torch.rand(300, 1, 1, 1, generator=gen) * torch.ones(300, 3, 8, 8),
             "uniform": torch.rand(300, 3, 8, 8, generator=gen)}[kind]
    pick = torch.randint(0, 300, (200,), generator=gen)
    x = (ref_x[pick] + 1e-3 * torch.randn(200, 3, 8, 8, generator=gen)).clamp(0, 1)
    if kind == "uniform":
        x = torch.rand(200, 3, 8, 8, generator=gen)
    ref = TensorDataset("r", ref_x, torch.zeros(300, dtype=torch.int64), 2)
    shipped = TensorDataset("s", x, torch.zeros(200, dtype=torch.int64), 2)
    found, want = dd.nearest_distances(shipped, ref), _brute(shipped, ref)
    assert np.allclose(found.nearest["l2"], want["l2"], rtol=1e-6, atol=1e-9)
    assert np.array_equal(found.nearest["linf"], want["linf"])


def test_the_linf_nearest_is_found_when_the_l2_nearest_is_another_example():
    ref = TensorDataset("r", torch.tensor([[0.5, 0, 0, 0, 0, 0], [0.3] * 6]), torch.zeros(2, dtype=torch.int64), 2)
    shipped = TensorDataset("s", torch.zeros(1, 6) + 1e-6, torch.zeros(1, dtype=torch.int64), 2)
    found = dd.nearest_distances(shipped, ref)
    assert np.isclose(found.nearest["l2"][0], 0.5, atol=1e-5)  # example 0
    assert np.isclose(found.nearest["linf"][0], 0.3, atol=1e-5)  # example 1


# ---- replay augmentation: recorded (exact) and redrawn (the papers' replay noise) -----------------------------------


def _augmented(path: Path, augment: bool) -> Path:
    data = tiny_data()
    config = dataclasses.replace(tiny_config(data), augment=augment, augment_seed=3 if augment else 0)
    model, optimizer, indices = start_run(config, data, seed=0)
    prove(path, model=model, optimizer=optimizer, data=data, config=config, indices=indices)
    return path


def test_redraw_gives_the_honest_proof_a_nonzero_error(tmp_path):
    path = _augmented(tmp_path / "aug", True)
    exact = Verifier(policy=All()).verify_path(path)
    assert exact.accepted and max(r.distances["l2"] for r in exact.intervals) == 0.0
    assert exact.replay_augmentation == {"mode": "recorded", "seed": None, "proof_augments": True}
    noisy = Verifier(policy=All(), replay_augmentation="redraw", augmentation_seed=11).verify_path(path)
    assert noisy.replay_augmentation["seed"] == 11
    assert min(r.distances["l2"] for r in noisy.intervals) > 0
    assert not any(r.bad_steps for r in noisy.intervals)  # redrawn batches are not hash-checked
    assert "data" not in noisy.reason_codes
    drawn = Verifier(replay_augmentation="redraw").verify_path(path)
    assert isinstance(drawn.replay_augmentation["seed"], int)


def test_redraw_leaves_a_proof_without_augmentation_exact(tmp_path):
    path = _augmented(tmp_path / "plain", False)
    report = Verifier(policy=All(), replay_augmentation="redraw").verify_path(path)
    assert report.accepted and max(r.distances["l2"] for r in report.intervals) == 0.0
    assert report.replay_augmentation["seed"] is None


def test_verifier_refuses_bad_options():
    for kwargs in ({"max_data_distance": -1.0}, {"max_data_distance": math.nan}, {"data_distance_metric": "l1"},
                   {"replay_augmentation": "fresh"}, {"augmentation_seed": -2}, {"reference_data": np.zeros(3)}):
        with pytest.raises(ValueError):
            Verifier(**kwargs)

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from thrifty.routing.datasets import convert_routerbench
from thrifty.routing.features import FeatureSpec, featurize, structure_vector
from thrifty.routing.learned import ArtifactError, Neighbours, load_artifact, train

CANDS = ["gpt-4-1106-preview", "gpt-3.5-turbo-1106", "mistralai/mistral-7b-chat"]


@pytest.fixture(scope="module")
def artifact_path(routing_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tr = convert_routerbench(routing_data / "routerbench" / "mbpp_train.csv").examples
    art = train(tr, candidates=CANDS, spec=FeatureSpec(embedding=None), repeats=1, target=0.95)
    path = tmp_path_factory.mktemp("learned") / "router.pkl"
    art.save(path)
    return path


def test_artifact_round_trip_and_calibration(artifact_path: Path, routing_data: Path) -> None:
    art = load_artifact(artifact_path)
    assert art.candidates == CANDS and art.kind == "router" and len(art.data_hash) == 64
    assert art.calibration is not None and art.calibration.best_quality == pytest.approx(0.686, abs=0.01)
    te = convert_routerbench(routing_data / "routerbench" / "mbpp_test.csv").examples
    p = art.predict([e.text for e in te])
    assert p.shape == (128, 3) and ((p >= 0) & (p <= 1)).all()
    # A looser target can only need a cheaper (or equal) setting.
    assert art.knob_for("threshold", 0.8) is not None
    k80, k95 = art.knob_for("threshold", 0.8), art.knob_for("threshold", 0.95)
    if k95 is not None:
        assert k80 <= k95  # type: ignore[operator]


def test_artifacts_that_cannot_be_used(artifact_path: Path, tmp_path: Path) -> None:
    payload = pickle.loads(artifact_path.read_bytes())
    bad = tmp_path / "old.pkl"
    bad.write_bytes(pickle.dumps({**payload, "format_version": 0}))
    with pytest.raises(ArtifactError, match="artifact format 0 is not 1"):
        load_artifact(bad)
    payload["artifact"].sklearn_version = "0.1.0"
    bad.write_bytes(pickle.dumps(payload))
    with pytest.raises(ArtifactError, match="trained with scikit-learn 0.1.0"):
        load_artifact(bad)
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "missing.pkl")


def test_neighbours_vote_of_similar_prompts() -> None:
    emb = np.eye(4, dtype=np.float32)[[0, 0, 0, 1, 1, 1]]
    quality = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 1]], dtype=float)
    nb = Neighbours(emb, quality, k=3, prior_weight=0.0)
    p = nb.predict(np.eye(4, dtype=np.float32)[[0, 1]])
    assert np.allclose(p, [[1.0, 1 / 3], [0.0, 1.0]])


def test_structure_features_see_the_kind_of_task() -> None:
    names = FeatureSpec().structure
    code = dict(
        zip(names, structure_vector("Write a python function:\n```def f(x): return x```"), strict=True)
    )
    mc = dict(zip(names, structure_vector("Which is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:"), strict=True))
    assert code["code_fence"] == 1.0 and code["code_task"] == 1.0 and mc["code_fence"] == 0.0
    assert mc["options"] > 0.5 and mc["wh_question"] == 1.0 and mc["question_mark"] == 1.0
    assert featurize(["a", "b c"], FeatureSpec(embedding=None)).shape == (2, len(names))


def test_blend_for_target_weighs_in_the_vote_that_ranks_the_prompts() -> None:
    from thrifty.routing.learned import _blend_for_target

    n = 400
    names = ["weak", "strong"]
    quality = np.column_stack([np.arange(n) < n // 2, np.ones(n)]).astype(float)
    cost = np.tile([1.0, 10.0], (n, 1))
    # One source separates the prompts the weak model fails on; the other says nothing.
    sharp = np.column_stack([np.where(quality[:, 0] == 1, 0.9, 0.1), np.full(n, 0.9)])
    flat = np.column_stack([np.full(n, 0.5), np.full(n, 0.9)])
    kw = {"reference": "strong", "max_cost": None}
    assert _blend_for_target(flat, sharp, quality, cost, names, 0.95, **kw) < 1.0
    assert _blend_for_target(sharp, flat, quality, cost, names, 0.95, **kw) == 1.0


def test_train_blend_by_target_uses_one_weight(routing_data: Path) -> None:
    tr = convert_routerbench(routing_data / "routerbench" / "mbpp_train.csv").examples
    art = train(tr, candidates=CANDS[:2], repeats=1, target=0.95, blend_by="target")
    assert set(art.blend) == set(CANDS[:2]) and len(set(art.blend.values())) == 1
    with pytest.raises(ValueError, match="unknown blend_by"):
        train(tr, candidates=CANDS[:2], repeats=1, blend_by="best")

"""``model.hard_loss_scope: federated``: the hard loss trains only the columns an image's label states vouch
for; runs with DataLoader workers, resumes exactly, and records the merge its states came from."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli, write_train_config
from scaledet.detector.config import load_config
from scaledet.labelspace.label_states import NEGATIVE, PARTIAL, POSITIVE, UNKNOWN


def test_federated_mask_by_hand():
    """Labels 0..4 with states positive (own), negative, partial, unknown, positive (another dataset's).
    Vouched on every region: 0 (own positive) and 1 (negative); 2, 3, 4 only where they are assigned."""
    from scaledet.detector.roi_heads import federated_label_mask

    target = {"label_states": torch.tensor([POSITIVE, NEGATIVE, PARTIAL, UNKNOWN, POSITIVE], dtype=torch.int8),
              "label_mask": torch.tensor([True, True, True, True, False])}
    regions = torch.tensor([0, 1, 3, 5])  # background, label 0, label 2, label 4 (torchvision's +1)
    mask = federated_label_mask([target], [regions])
    #                 bg     0     1      2      3      4
    expected = [[True, True, True, False, False, False],
                [True, True, True, False, False, False],
                [True, True, True, True, False, False],
                [True, True, True, False, False, True]]
    assert mask.tolist() == expected


def _merge_with_decision(world, tmp_path) -> str:
    """``merge`` of the shapes build into a folder of its own, with circle ≡ round disk accepted by hand."""
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("a,b,decision\nshapesa/circle,shapesb/round disk,accept\n")
    done = run_cli("scaledet-labels", "merge", "--labelspace", str(world / "labelspace"), "--out", str(tmp_path / "merge"),
                   "--decisions", str(decisions))
    assert done.returncode == 0, done.stderr
    return str(tmp_path / "merge" / "merged.parquet")


def test_a_merge_decision_changes_the_states(shapes_world, tmp_path):
    from scaledet.detector.engine import Trainer

    merged = _merge_with_decision(shapes_world, tmp_path)
    for merge, expected in ((merged, NEGATIVE), (None, UNKNOWN)):
        config = load_config(write_train_config(shapes_world, tmp_path / f"run-{expected}", eval_datasets=[]),
                             ["model.hard_loss_scope=federated"])
        config.merge = merge
        trainer = Trainer(config, show_progress=False)
        shapesb = trainer.datasets[1]
        space = trainer.labelspace.global_ids
        circle, disk = space.index("shapesa/circle"), space.index("shapesb/round disk")
        for position, image in enumerate(shapesb.images):
            states = shapesb.label_states(int(image))
            if states[disk] == NEGATIVE:  # a shapesb image without a round disk
                assert states[circle] == expected, (merge, position)
                break
        else:
            pytest.fail("no shapesb image without a round disk")
        assert trainer.label_states["merge_file"] == merge
        assert trainer.label_states["protocols"] == {"shapesa": "exhaustive", "shapesb": "exhaustive"}


def test_federated_training_with_workers_resumes_exactly(shapes_world, tmp_path):
    from scaledet.detector.engine import Trainer

    merged = _merge_with_decision(shapes_world, tmp_path)
    overrides = ["num_workers=2", "model.hard_loss_scope=federated", f"merge={merged}"]

    def config(name: str):
        return load_config(write_train_config(shapes_world, tmp_path / name, eval_datasets=[]), overrides)

    straight = Trainer(config("straight"), show_progress=False)
    straight.train()
    first = Trainer(config("resumed"), show_progress=False)
    first.train(stop_after=2)
    resumed = Trainer(config("resumed"), resume=True, show_progress=False)
    assert resumed.start_iteration == 2
    resumed.train()
    a = torch.load(tmp_path / "straight" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=True)
    for key in a["model"]:
        assert torch.allclose(a["model"][key].float(), b["model"][key].float(), atol=1e-6), key
    assert b["label_states"]["merge_file"] == merged and len(b["label_states"]["merge_sha256"]) == 64
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3] and all(r["loss_hard"] > 0 for r in rows)
    # resuming with other label states would change the loss mid-run: refused in one line
    other = load_config(write_train_config(shapes_world, tmp_path / "resumed", eval_datasets=[]),
                        ["num_workers=2", "model.hard_loss_scope=federated", "merge=null", "schedule.iterations=6"])
    from scaledet.labelspace.io.errors import ScaledetError

    with pytest.raises(ScaledetError, match="label states of merge"):
        Trainer(other, resume=True, show_progress=False)

"""params.yaml strictness: unknown keys, wrong types and out-of-range values fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, Params, load_params
from tests.conftest import REPO_ROOT


def test_params_yaml_matches_dataclass_defaults():
    # The dataclass defaults document the defaults; params.yaml must not drift from them.
    assert load_params(REPO_ROOT / "params.yaml") == Params()


def test_every_yaml_section_is_a_dataclass_section():
    tree = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert set(tree) == set(Params.__dataclass_fields__)


@pytest.mark.parametrize(
    "override, message",
    [
        ("gsg.sigmaa=2.0", "unknown key(s) 'sigmaa' in `gsg`"),
        ("nonsense.key=1", "unknown key(s) 'nonsense' in the top level"),
        ("train.epochs=ten", "`train.epochs` must be an integer"),
        ("train.epochs=2.5", "`train.epochs` must be an integer"),
        ("gsg.learnable_sigma=maybe", "`gsg.learnable_sigma` must be true or false"),
        ("gsg.sigma_init=-1", "`gsg.sigma_init` must be > 0"),
        ("gsg.kernel_size=4", "`gsg.kernel_size` must be a positive odd integer"),
        ("synthetic.rho_visual=1.5", "`synthetic.rho_visual` must be a probability"),
        ("model.variant=bert", "`model.variant` must be one of 'cra' | 'tempclip'"),
        ("features.visual.batch_size=0", "`features.visual.batch_size` must be >= 1"),
        ("data.eval_splits=test", "`data.eval_splits` must be a list"),
        ("model.d_model=100", "must be divisible by `model.heads`"),
        ("train.batch_size=1", "`train.batch_size` must be >= 2"),
        ("gsg.kernel_size=33", "must not exceed decode.num_frames"),
    ],
)
def test_bad_values_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_params(REPO_ROOT / "params.yaml", [override])
    assert message in str(err.value)


def test_override_changes_only_its_key():
    params = load_params(REPO_ROOT / "params.yaml", ["gsg.sigma_init=2.0", "train.lr=1e-5"])
    assert params.gsg.sigma_init == 2.0
    assert params.train.lr == pytest.approx(1e-5)
    assert params.gsg.kernel_size == Params().gsg.kernel_size


def test_ints_are_accepted_for_floats():
    assert load_params(REPO_ROOT / "params.yaml", ["gsg.sigma_init=2"]).gsg.sigma_init == 2.0


def test_missing_params_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_synthetic_dataset_reads_the_generated_folder(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.annotation_dir"):
        load_params(REPO_ROOT / "params.yaml", ["data.annotation_dir=elsewhere"])


# WissingChen/CRA-GQA config/CRA/CRA_NextGQA.yml, transcribed: (our key, official key, official value).
OFFICIAL_CRA_NEXTGQA = [
    ("decode.num_frames", "dataset.max_feats", 32),
    ("features.text.question_max_len", "dataset.qmax_words", 30),
    ("features.text.answer_max_len", "dataset.amax_words", 38),
    ("model.d_model", "model.d_model", 768),
    ("model.layers", "model.num_layers", 2),
    ("model.heads", "model.num_heads", 8),
    ("model.dropout", "model.dropout", 0.3),
    ("train.optimizer", "optim.optimizer", "adam"),  # `Adam`
    ("train.amsgrad", "optim.amsgrad", True),
    ("train.lr", "optim.lr", 1e-5),
    ("train.weight_decay", "optim.weight_decay", 0.0),
    ("train.grad_clip", "optim.clip", 12.0),
    ("train.epochs", "optim.epochs", 30),
    ("train.batch_size", "dataset.batch_size", 64),
    ("train.qa_weight", "optim.loss.ce.vqa", 1.0),
    ("train.question_discrimination_weight", "optim.loss.ce.vq", 1.0),
    ("cma.weight", "optim.loss.align.g", 0.5),
    ("gsg.kernel_size", "AdaptiveGaussianFilter(kernel_size=5)", 5),
    ("gsg.sigma_init", "AdaptiveGaussianFilter(initial_sigma=1.0)", 1.0),
    ("train.seed", "misc.seed", 2024),
    ("train.select_by", "stat.monitor.metric", "acc_qa"),  # `acc`
    ("model.grounding_query", "refine_forward: qsn_g = answer_g.max(dim=1)", "max_qa"),
    ("model.frames_read_question", "Decoder: self-attention over the frames only", False),
    ("model.standardize_video", "CLIP features used raw", False),
    ("eci.linguistic", "refine_forward: self.do(qsn_g) commented out", False),
]


@pytest.mark.parametrize(
    "key, official_key, official", OFFICIAL_CRA_NEXTGQA, ids=[k for k, _, _ in OFFICIAL_CRA_NEXTGQA]
)
def test_paper_preset_matches_the_official_configuration(key, official_key, official):
    value = load_params(REPO_ROOT / "configs" / "paper.yaml")
    for part in key.split("."):
        value = getattr(value, part)
    assert value == official, f"{key} = {value!r}, official {official_key} = {official!r}"


def test_paper_preset_loads_strictly_with_the_published_setting():
    paper = load_params(REPO_ROOT / "configs" / "paper.yaml")
    assert (paper.features.visual.model, paper.features.visual.pretrained) == ("ViT-L-14", "openai")
    assert paper.features.text.model == "roberta-base" and paper.svo.parser == "stanza"
    assert paper.data.dataset == "nextgqa" and paper.model.variant == "cra"
    # Only the documented settings differ from the default params.
    default = load_params(REPO_ROOT / "params.yaml")
    assert paper.gsg == default.gsg and paper.eci.visual == default.eci.visual
    assert paper.cma.temperature == default.cma.temperature and paper.cma.enabled == default.cma.enabled
    assert paper.train.warmup_epochs == default.train.warmup_epochs and paper.eval == default.eval
    assert paper.train.vq_negatives == 4 and paper.train.vq_same_video == 0.3  # the official loader's
    assert paper.train.grounding_supervision == 0.0  # weakly supervised

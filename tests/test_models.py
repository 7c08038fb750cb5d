"""CRA model tests on tiny configs: golden values for the pure math, shapes, gradients, determinism,
the official data flow (frames reach the answer only through the grounding weights; training-only terms
only in training), ablation switches, checkpoint round trip and a tiny overfit run."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.backbone import BackboneConfig
from models.cma import CMAConfig, info_nce
from models.cra import CRA, CRABatch, CRAConfig
from models.eci import ECIConfig, LanguageDictionary, VisualDictionary, graph_adjacency
from models.graph_nodes import GRAPH_NODES
from models.gsg import GroundingOutput, GSGConfig, gaussian_kernel, smooth_frame_weights
from models.losses import compute_losses, grounding_supervision_loss

B, T, A, LQ, LA, C = 4, 8, 5, 6, 4, 3
DV, DT, D = 12, 10, 32
KV, KL = 7, 5
LOSS_WEIGHTS = dict(qa_weight=1.0, question_discrimination_weight=1.0, cma_weight=0.5)


def make_batch(
    seed: int = 0, batch: int = B, options: int = A, with_answer: bool = True, training: bool = False
) -> CRABatch:
    """Random inputs; `training` adds the VQ question choices (the true question first) and frame labels."""
    g = torch.Generator().manual_seed(seed)
    video_mask = torch.ones(batch, T, dtype=torch.bool)
    video_mask[0, -3:] = False  # a shorter video, padded
    question_mask = torch.ones(batch, LQ, dtype=torch.bool)
    question_mask[1, -2:] = False
    option_mask = torch.ones(batch, options, LA, dtype=torch.bool)
    option_mask[:, :, -1] = False
    question_pooled = torch.randn(batch, DT, generator=g)
    choices = labels = None
    if training:
        choices = torch.cat([question_pooled[:, None], torch.randn(batch, C - 1, DT, generator=g)], dim=1)
        labels = torch.zeros(batch, T)
        labels[:, 2:4] = 1.0
    return CRABatch(
        video=torch.randn(batch, T, DV, generator=g),
        video_mask=video_mask,
        question_tokens=torch.randn(batch, LQ, DT, generator=g),
        question_mask=question_mask,
        question_pooled=question_pooled,
        option_tokens=torch.randn(batch, options, LA, DT, generator=g),
        option_mask=option_mask,
        qa_pooled=torch.randn(batch, options, DT, generator=g),
        answer=torch.randint(0, options, (batch,), generator=g) if with_answer else None,
        question_choices=choices,
        frame_labels=labels,
        supervise_grounding=torch.ones(batch, dtype=torch.bool) if training else None,
    )


def slice_batch(batch: CRABatch, rows: list[int]) -> CRABatch:
    """The questions `rows` of a batch, as a batch of their own."""
    return CRABatch(
        **{
            f.name: None if getattr(batch, f.name) is None else getattr(batch, f.name)[rows]
            for f in dataclasses.fields(batch)
        }
    )


def make_dictionaries(seed: int = 0) -> tuple[VisualDictionary, LanguageDictionary]:
    g = torch.Generator().manual_seed(100 + seed)
    visual = VisualDictionary(torch.randn(KV, DV, generator=g), torch.rand(KV, generator=g) + 0.1)
    language = LanguageDictionary(torch.randn(KL, len(GRAPH_NODES), DT, generator=g), torch.rand(KL, generator=g) + 0.1)
    return visual, language


def sections(
    variant: str = "cra",
    smoothing: bool = True,
    cma: bool = True,
    visual: bool = True,
    linguistic: bool = True,
    dropout: float = 0.0,
    **model_options,
) -> SimpleNamespace:
    return SimpleNamespace(
        model=BackboneConfig(variant=variant, d_model=D, layers=1, heads=4, dropout=dropout, **model_options),
        gsg=GSGConfig(kernel_size=5, sigma_init=1.0, learnable_sigma=True, smoothing=smoothing),
        cma=CMAConfig(enabled=cma, temperature=0.07, weight=0.5),
        eci=ECIConfig(visual=visual, linguistic=linguistic),
    )


def build(seed: int = 0, visual_seed: int = 0, language_seed: int = 0, **switches) -> CRA:
    """A tiny model; `visual_seed` / `language_seed` pick the confounder dictionaries' contents."""
    torch.manual_seed(seed)
    visual, _ = make_dictionaries(visual_seed)
    _, language = make_dictionaries(language_seed)
    return CRA.from_config(
        sections(**switches), visual_dim=DV, text_dim=DT, visual_dictionary=visual, language_dictionary=language
    )


def run_eval(model: CRA, batch: CRABatch):
    model.eval()
    with torch.no_grad():
        return model(batch)


# --- pure math: golden values -------------------------------------------------------------------


def test_gaussian_kernel_matches_hand_computed_values():
    # exp(-x^2 / 2) at x = -2..2 is e^-2, e^-0.5, 1, e^-0.5, e^-2; normalised by their sum 2.483732.
    expected = torch.tensor([0.0544887, 0.2442010, 0.4026200, 0.2442010, 0.0544887])
    kernel = gaussian_kernel(5, 1.0)
    torch.testing.assert_close(kernel, expected, atol=1e-6, rtol=0)
    wide = gaussian_kernel(5, 3.0)
    assert wide[2] < kernel[2] and wide[0] > kernel[0]  # a larger sigma spreads the mass


def test_smoothing_renormalises_at_the_border_and_skips_padding():
    kernel = gaussian_kernel(5, 1.0)
    k0, k1, k2 = kernel[2].item(), kernel[1].item(), kernel[0].item()  # centre, +-1, +-2
    mask = torch.tensor([[True] * 6 + [False] * 2])
    # All weight on frame 0: each output is the kernel-weighted mean over in-range neighbours only.
    spike = torch.zeros(1, T)
    spike[0, 0] = 1.0
    raw = torch.tensor([k0 / (k0 + k1 + k2), k1 / (k0 + 2 * k1 + k2), k2 / (k0 + 2 * k1 + 2 * k2)])
    smoothed = smooth_frame_weights(spike, mask, kernel)
    torch.testing.assert_close(smoothed[0, :3], raw / raw.sum(), atol=1e-6, rtol=0)
    assert smoothed[0, 3:].abs().max() == 0
    # Uniform weights over the real frames stay uniform: no mass is lost at the borders or to padding.
    uniform = mask.float() / 6
    torch.testing.assert_close(smooth_frame_weights(uniform, mask, kernel), uniform)


def test_info_nce_of_aligned_one_hot_pairs_matches_hand_computed_value():
    n, temperature = 4, 0.5
    eye = torch.eye(n)
    # Each row's logits: 1/t on the diagonal, 0 elsewhere -> CE = log(1 + (n - 1) e^(-1/t)), both ways.
    expected = math.log(1 + (n - 1) * math.exp(-1 / temperature))
    assert info_nce(eye, eye, temperature).item() == pytest.approx(expected, abs=1e-6)
    misaligned = torch.roll(eye, shifts=1, dims=0)
    assert info_nce(eye, misaligned, temperature).item() > expected + 1.0
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    assert info_nce(a, b, 0.07).item() == pytest.approx(info_nce(b, a, 0.07).item(), abs=1e-5)


# The semantic graph's 11 undirected edges, written out independently of models/eci.py's GRAPH_EDGES.
EXPECTED_EDGES = {
    frozenset(edge)
    for edge in [
        ("question", "question_type"),
        ("question", "subject"),
        ("question", "verbs"),
        ("question", "objects"),
        ("question", "answer"),
        ("subject", "verbs"),
        ("verbs", "objects"),
        ("question_type", "answer"),
        ("answer", "answer_verbs"),
        ("answer", "answer_objects"),
        ("answer_verbs", "answer_objects"),
    ]
}


def test_graph_adjacency_has_exactly_the_semantic_edges_and_gcn_normalisation():
    adjacency = graph_adjacency()
    assert adjacency.shape == (len(GRAPH_NODES), len(GRAPH_NODES))
    edges = {frozenset((GRAPH_NODES[i], GRAPH_NODES[j])) for i, j in torch.nonzero(adjacency).tolist() if i != j}
    assert edges == EXPECTED_EDGES
    # D^-1/2 (A + I) D^-1/2, degrees counting the self-loop: question 6, verbs 4, answer 5, the others 3.
    degree = {"question": 6, "question_type": 3, "subject": 3, "verbs": 4, "objects": 3, "answer": 5}
    degree |= {"answer_verbs": 3, "answer_objects": 3}
    index = {name: i for i, name in enumerate(GRAPH_NODES)}
    for name, d in degree.items():
        assert adjacency[index[name], index[name]].item() == pytest.approx(1 / d)
    for a, b in (("question", "answer"), ("verbs", "objects"), ("answer_verbs", "answer_objects")):
        assert adjacency[index[a], index[b]].item() == pytest.approx(1 / math.sqrt(degree[a] * degree[b]))


# --- the composed model -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
@pytest.mark.parametrize("options", [5, 4])  # NExT-GQA, STAR
def test_output_shapes_and_frame_weights(variant, options):
    model = build(variant=variant)
    batch = make_batch(options=options)
    out = run_eval(model, batch)
    assert out.option_logits.shape == (B, options)
    assert out.frame_weights.shape == out.frame_attention.shape == (B, T)
    assert out.grounded_video.shape == (B, D)
    assert out.question_logits is None and out.alignment_loss is None  # training-only terms
    trained = model(make_batch(options=options, training=True))
    assert trained.question_logits.shape == (B, C)
    torch.testing.assert_close(out.frame_weights.sum(-1), torch.ones(B))
    assert out.frame_weights[0, -3:].abs().max() == 0  # padded frames get no grounding weight
    assert out.prediction.shape == (B,)
    if variant == "cra":
        assert out.visual_intervention_weights.shape == (B, KV)
        assert out.linguistic_intervention_weights.shape == (B, options, KL)
        torch.testing.assert_close(out.visual_intervention_weights.sum(-1), torch.ones(B))
        assert out.sigma.item() == pytest.approx(1.0)


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_training_only_terms_need_question_choices_and_leave_the_answer_path_alone(variant):
    model = build(variant=variant)
    batch = make_batch(training=True)
    plain = run_eval(model, dataclasses.replace(batch, question_choices=None, frame_labels=None))
    assert plain.question_logits is None and plain.alignment_loss is None
    with_answer_only = run_eval(model, dataclasses.replace(batch, question_choices=None))
    assert with_answer_only.alignment_loss is None  # `answer` alone (evaluation) computes no CMA
    training = run_eval(model, batch)
    assert training.question_logits.shape == (B, C)
    assert (training.alignment_loss is not None) == (variant == "cra")
    torch.testing.assert_close(training.option_logits, plain.option_logits)
    torch.testing.assert_close(training.frame_weights, plain.frame_weights)


def move_read_outs_off_zero(model: CRA) -> list[str]:
    """The interventions' read-out output layers start at zero (an identity start), so at step 0 nothing
    behind them gets a gradient; after the first step they are non-zero. Set them as after that step."""
    moved = []
    if model.eci is not None:
        for name, parameter in model.eci.named_parameters():
            if name.endswith(("fuse.weight", "attention.to_out.weight")):
                assert parameter.abs().max() == 0, name
                torch.nn.init.normal_(parameter, std=0.02)
                moved.append(name)
    return moved


def test_interventions_start_as_the_identity_up_to_their_norm():
    model = build()
    batch = make_batch()
    out = run_eval(model, batch)
    # With the read-outs at zero, the answers do not depend on the dictionaries' contents yet.
    other = run_eval(build(visual_seed=1, language_seed=1), batch)
    torch.testing.assert_close(out.option_logits, other.option_logits)
    assert move_read_outs_off_zero(model)


@pytest.mark.parametrize("variant", ["cra", "tempclip", "blind"])
def test_gradients_reach_every_trainable_parameter(variant):
    model = build(variant=variant, dropout=0.1)
    move_read_outs_off_zero(model)
    model.train()
    batch = make_batch(training=True)
    losses = compute_losses(model(batch), batch, grounding_weight=1.0, **LOSS_WEIGHTS)
    assert {"qa", "grounding", "total"} <= set(losses)
    losses["total"].backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert [name for name, grad in grads.items() if grad is None] == []
    # Every parameter learns: a non-zero gradient (the smallest are ~1e-8 at this tiny init). Parameters a
    # softmax ignores (a bias shifting every logit of a row equally) would have an exactly zero gradient
    # in exact arithmetic: there are none (see test_no_parameter_only_shifts_a_softmax_row).
    zero = [name for name, grad in grads.items() if not grad.abs().max() > 0]
    assert zero == []
    if variant == "cra":
        assert set(losses) == {"qa", "question_discrimination", "cma", "grounding", "total"}
        assert model.gsg.log_sigma.grad.abs() > 0
    if variant == "blind":  # no VQ pass: nothing to ground
        assert "question_discrimination" not in losses


def test_no_parameter_only_shifts_a_softmax_row():
    # An attention's key bias adds q . b_k to every logit of a query's row: the softmax over keys ignores it.
    names = [name for name, _ in build().named_parameters()]
    assert not any(name.endswith(".to_k.bias") for name in names)
    assert any(name.endswith(".to_k.weight") for name in names)


def test_frame_attention_has_no_bias_before_its_softmax():
    # The last score layer feeds a softmax over frames: a bias there could never learn (see backbone.py).
    model = build()
    last_layers = [name for name, _ in model.named_parameters() if ".attention.score.2." in name]
    assert last_layers and all(name.endswith(".weight") for name in last_layers), last_layers


EVAL_OUTPUTS = ("option_logits", "frame_weights", "frame_attention", "grounded_video")


def test_eval_forward_is_deterministic_for_a_seed():
    batch = make_batch()
    first = run_eval(build(seed=3, dropout=0.1), batch)
    second = run_eval(build(seed=3, dropout=0.1), batch)
    for name in EVAL_OUTPUTS:
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    other_seed = run_eval(build(seed=4, dropout=0.1), batch)
    assert not torch.equal(first.option_logits, other_seed.option_logits)


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_eval_outputs_do_not_depend_on_the_global_rng(variant):
    # Dropout left on at evaluation would make these differ: the global RNG state feeds its masks.
    model = build(variant=variant, dropout=0.5)
    batch = make_batch()
    torch.manual_seed(11)
    first = run_eval(model, batch)
    torch.manual_seed(12)
    second = run_eval(model, batch)
    for name in EVAL_OUTPUTS:
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    # Control: in training mode the same two RNG states do change the outputs.
    model.train()
    with torch.no_grad():
        torch.manual_seed(11)
        noisy_first = model(batch).option_logits
        torch.manual_seed(12)
        noisy_second = model(batch).option_logits
    assert not torch.allclose(noisy_first, noisy_second)


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_permuting_the_options_permutes_the_answer_logits(variant):
    model = build(variant=variant)
    batch = make_batch(with_answer=False)
    order = torch.tensor([3, 0, 4, 1, 2])  # option j of the permuted batch is option order[j]
    permuted = dataclasses.replace(
        batch,
        option_tokens=batch.option_tokens[:, order],
        option_mask=batch.option_mask[:, order],
        qa_pooled=batch.qa_pooled[:, order],
    )
    out, out_permuted = run_eval(model, batch), run_eval(model, permuted)
    torch.testing.assert_close(out_permuted.option_logits, out.option_logits[:, order], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_permuted.frame_weights, out.frame_weights, rtol=1e-5, atol=1e-6)
    assert torch.equal(order[out_permuted.prediction], out.prediction)


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_eval_outputs_do_not_depend_on_batch_composition(variant):
    model = build(variant=variant)
    batch = make_batch(batch=B, with_answer=False)
    together = run_eval(model, batch)
    for i in range(B):
        alone = run_eval(model, slice_batch(batch, [i]))
        for name in EVAL_OUTPUTS:
            torch.testing.assert_close(
                getattr(alone, name)[0], getattr(together, name)[i], rtol=1e-5, atol=1e-6, msg=f"{name}, row {i}"
            )
    # And in another order, with another neighbour.
    reordered = run_eval(model, slice_batch(batch, [2, 0]))
    torch.testing.assert_close(reordered.option_logits, together.option_logits[[2, 0]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_padded_frames_do_not_affect_the_outputs(variant):
    model = build(variant=variant)
    batch = make_batch(with_answer=False)
    padded = ~batch.video_mask
    assert padded.any()
    video = batch.video.clone()
    video[padded] = 100.0 * torch.randn(int(padded.sum()), DV, generator=torch.Generator().manual_seed(5))
    out, out_changed = run_eval(model, batch), run_eval(model, dataclasses.replace(batch, video=video))
    for name in EVAL_OUTPUTS:
        torch.testing.assert_close(getattr(out_changed, name), getattr(out, name), rtol=1e-5, atol=1e-6, msg=name)
    # Control: changing a real frame does change them.
    video[0, 0] += 1.0
    moved = run_eval(model, dataclasses.replace(batch, video=video))
    assert not torch.allclose(moved.option_logits[0], out.option_logits[0])


def test_smoothing_switch():
    batch = make_batch()
    smoothed = run_eval(build(smoothing=True), batch)
    assert not torch.allclose(smoothed.frame_weights, smoothed.frame_attention)
    model = build(smoothing=False)
    plain = run_eval(model, batch)
    assert torch.equal(plain.frame_weights, plain.frame_attention)
    assert plain.sigma is None
    assert not any("sigma" in name for name, _ in model.named_parameters())


def test_cma_switch():
    batch = make_batch(training=True)
    on = build(cma=True)
    assert on(batch).alignment_loss.item() > 0
    off = build(cma=False)
    assert not any(name.startswith("cma.") for name, _ in off.named_parameters())
    out = off(batch)
    assert out.alignment_loss is None
    assert "cma" not in compute_losses(out, batch, **LOSS_WEIGHTS)


@pytest.mark.parametrize("component", ["visual", "linguistic"])
def test_eci_switch_makes_output_independent_of_its_dictionary(component):
    batch = make_batch()
    other_dictionary = {"visual_seed": 1} if component == "visual" else {"language_seed": 1}
    # Switched on (read-outs moved off their zero start), another dictionary changes the answer scores ...
    on_a, on_b = build(), build(**other_dictionary)
    for model in (on_a, on_b):
        torch.manual_seed(7)
        move_read_outs_off_zero(model)
    on_a, on_b = run_eval(on_a, batch), run_eval(on_b, batch)
    assert not torch.allclose(on_a.option_logits, on_b.option_logits)
    # ... switched off, it does not, and the intervention has no parameters or buffers.
    off_a = build(**{component: False})
    off_b = build(**other_dictionary, **{component: False})
    out_a, out_b = run_eval(off_a, batch), run_eval(off_b, batch)
    assert torch.equal(out_a.option_logits, out_b.option_logits)
    assert torch.equal(out_a.grounded_video, out_b.grounded_video)
    assert getattr(out_a, f"{component}_intervention_weights") is None
    assert not any(name.startswith(f"eci.{component}.") for name in off_a.state_dict())


def test_blind_control_never_reads_the_frames():
    torch.manual_seed(0)
    model = CRA.from_config(sections(variant="blind"), visual_dim=DV, text_dim=DT)
    assert not any(
        name.startswith(("gsg.", "eci.", "cma.", "question_frame_attention.")) for name in model.state_dict()
    )
    batch = make_batch(training=True)
    out = run_eval(model, batch)
    other_video = run_eval(model, dataclasses.replace(batch, video=torch.randn(B, T, DV)))
    torch.testing.assert_close(other_video.option_logits, out.option_logits)
    assert out.question_logits is None
    torch.testing.assert_close(out.frame_weights.sum(-1), torch.ones(B))
    # The texts do matter: another question changes the answer scores.
    other_text = run_eval(model, dataclasses.replace(batch, qa_pooled=torch.randn(B, A, DT)))
    assert not torch.allclose(other_text.option_logits, out.option_logits)


def test_tempclip_has_no_cra_components_and_needs_no_dictionaries():
    torch.manual_seed(0)
    model = CRA.from_config(sections(variant="tempclip"), visual_dim=DV, text_dim=DT)
    names = list(model.state_dict())
    assert not any(name.startswith(("gsg.", "eci.", "cma.")) for name in names)
    out = run_eval(model, make_batch())
    assert torch.equal(out.frame_weights, out.frame_attention)
    assert out.alignment_loss is None and out.sigma is None


def test_missing_dictionaries_raise_a_clear_error():
    with pytest.raises(ValueError, match="no visual confounder dictionary"):
        CRA.from_config(sections(), visual_dim=DV, text_dim=DT)
    _, language = make_dictionaries()
    model = CRA.from_config(sections(visual=False), visual_dim=DV, text_dim=DT, language_dictionary=language)
    assert model.eci.visual is None
    visual_wrong_width = VisualDictionary(torch.randn(KV, DV + 1), torch.ones(KV))
    with pytest.raises(ValueError, match="rebuild the dictionary"):
        CRA.from_config(
            sections(), visual_dim=DV, text_dim=DT, visual_dictionary=visual_wrong_width, language_dictionary=language
        )


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_vq_pass_grounds_on_the_true_question_and_scores_every_choice(variant):
    model = build(variant=variant)
    batch = make_batch(training=True)
    out = run_eval(model, batch)
    # The loss is the cross-entropy with choice 0 (the true question) as the target.
    hand = -out.question_logits.log_softmax(-1)[:, 0].mean()
    torch.testing.assert_close(compute_losses(out, batch, **LOSS_WEIGHTS)["question_discrimination"], hand)
    # A negative choice only changes its own column: the grounding reads the true question alone ...
    choices = batch.question_choices.clone()
    choices[:, 2] = torch.randn(B, DT, generator=torch.Generator().manual_seed(9))
    other_negative = run_eval(model, dataclasses.replace(batch, question_choices=choices))
    torch.testing.assert_close(other_negative.question_logits[:, :2], out.question_logits[:, :2])
    assert not torch.allclose(other_negative.question_logits[:, 2], out.question_logits[:, 2])
    # ... and the true question changes the grounded video, so every column.
    choices = batch.question_choices.clone()
    choices[:, 0] = torch.randn(B, DT, generator=torch.Generator().manual_seed(10))
    other_true = run_eval(model, dataclasses.replace(batch, question_choices=choices))
    assert not torch.allclose(other_true.question_logits[:, 1], out.question_logits[:, 1])


def one_hot_frames(t: int, batch: int = B) -> torch.Tensor:
    weights = torch.zeros(batch, T)
    weights[:, t] = 1.0
    return weights


@pytest.mark.parametrize("variant", ["cra", "tempclip"])
def test_frames_reach_the_answer_only_through_the_grounding_weights(variant, monkeypatch):
    """With the weights forced to a one-hot on frame t, changing any other frame (after the temporal
    encoder) leaves the option logits unchanged; changing frame t changes them (the control)."""
    model = build(variant=variant, smoothing=False)
    torch.manual_seed(3)
    move_read_outs_off_zero(model)
    t = 2
    if variant == "cra":
        monkeypatch.setattr(
            model.gsg,
            "forward",
            lambda frames, query, mask: GroundingOutput(one_hot_frames(t), one_hot_frames(t), frames[:, t]),
        )
    else:
        monkeypatch.setattr(model.question_frame_attention, "forward", lambda frames, query, mask: one_hot_frames(t))
    replaced: dict[str, torch.Tensor] = {}

    def edit_frames(module, inputs, output):  # the encoded frames, as the grounding reads them
        if "frames" in replaced:
            output.frames = replaced["frames"](output.frames)
        return output

    model.backbone.register_forward_hook(edit_frames)
    batch = make_batch(with_answer=False)
    base = run_eval(model, batch)
    noise = torch.randn(B, T, D, generator=torch.Generator().manual_seed(4))
    others = torch.ones(T, dtype=torch.bool)
    others[t] = False
    replaced["frames"] = lambda frames: torch.where(others[None, :, None], frames + 10 * noise, frames)
    torch.testing.assert_close(run_eval(model, batch).option_logits, base.option_logits)
    replaced["frames"] = lambda frames: torch.where(~others[None, :, None], frames + 10 * noise, frames)
    assert not torch.allclose(run_eval(model, batch).option_logits, base.option_logits)


def test_ground_truth_pooling_pools_the_labelled_frames():
    model = build(variant="tempclip", ground_truth_pooling=True)
    batch = make_batch(training=True)
    out = run_eval(model, dataclasses.replace(batch, question_choices=None))
    torch.testing.assert_close(out.frame_weights, batch.frame_labels / batch.frame_labels.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="needs batches with frame_labels"):
        run_eval(model, dataclasses.replace(batch, frame_labels=None, question_choices=None))


def test_standardised_video_equals_the_plain_model_on_standardised_features():
    mean, std = torch.randn(DV), torch.rand(DV) + 0.5
    standardised = build(standardize_video=True)
    standardised.backbone.set_video_statistics(mean, std)
    plain = build(standardize_video=False)
    plain.load_state_dict(standardised.state_dict())
    batch = make_batch()
    # The front-door's dictionary centroids are standardised the same way, so only the frames differ.
    plain.eci.visual.centroids.copy_((standardised.eci.visual.centroids - mean) / std)
    expected = run_eval(plain, dataclasses.replace(batch, video=(batch.video - mean) / std))
    torch.testing.assert_close(run_eval(standardised, batch).option_logits, expected.option_logits)
    with pytest.raises(ValueError, match="std > 0"):
        standardised.backbone.set_video_statistics(mean, torch.zeros(DV))


def test_grounding_supervision_loss_matches_a_hand_computed_value():
    weights = torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.25, 0.25, 0.25, 0.25]])
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # Row 0: -(0.5 log 0.5 + 0.5 log 0.25); row 1 has no labelled frame and is skipped.
    expected = -(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
    loss = grounding_supervision_loss(weights, labels, torch.tensor([True, True]))
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert grounding_supervision_loss(weights, labels, torch.tensor([False, True])).item() == 0.0


def test_unknown_variant_is_rejected():
    config = CRAConfig(visual_dim=DV, text_dim=DT, model=BackboneConfig(variant="tempclap", d_model=D, heads=4))
    with pytest.raises(ValueError, match="model.variant must be cra, tempclip or blind"):
        CRA(config)


def test_batch_shape_errors_name_the_field():
    batch = make_batch()
    with pytest.raises(ValueError, match=r"CRABatch.qa_pooled has shape \(4, 3, 10\), expected \(4, 5, 10\)"):
        dataclasses.replace(batch, qa_pooled=torch.randn(B, 3, DT))


def test_checkpoint_round_trip_through_safetensors_and_json(tmp_path):
    model = build()
    batch = make_batch()
    expected = run_eval(model, batch)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))

    config = CRAConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert config == model.config
    restored = CRA(config)  # placeholder dictionaries until the state_dict is loaded
    restored.load_state_dict(load_file(tmp_path / "model.safetensors"))
    torch.testing.assert_close(run_eval(restored, batch).option_logits, expected.option_logits)


def test_tiny_batch_overfits():
    model = build(seed=0)
    batch = make_batch(seed=1, batch=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    history = []
    batch = make_batch(seed=1, batch=8, training=True)
    for _ in range(20):
        losses = compute_losses(model(batch), batch, **LOSS_WEIGHTS)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append(losses["qa"].item())
    assert history[-1] < 0.25 * history[0], history

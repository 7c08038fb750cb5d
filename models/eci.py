"""Explicit Causal Intervention (ECI): a front-door intervention on the visual side and a back-door
intervention on the language side, each over a fixed confounder dictionary built offline by clustering.

Shape notation: B batch, T frames, A options, D width, Dv frame-feature width, Dt text-feature width,
Kv visual clusters, Kl language clusters, G = 8 graph nodes.

Both expectations over dictionary entries z use the normalised-weighted-geometric-mean (NWGM)
approximation E_z[f(m, z)] ~ f(m, sum_z P(z | m) z): a single attention read-out over the (projected)
dictionary replaces sampling f once per entry. The prior P(z) (cluster sizes / total) enters as a
log-prior logit bias, so the attention weights are P(z | m) proportional to P(z) exp(q(m) . k(z) / sqrt(D)).
The dictionaries are buffers (saved in the state_dict, never trained).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from models.graph_nodes import GRAPH_NODES
from models.layers import Attention

# Undirected edges. The question node is the root of the question's parts (its type and its
# subject-verb-object triple); subject -> verbs -> objects is the SVO chain; the question type says what
# kind of answer is wanted and the question is answered by the answer node; the answer has its own
# verb -> object chain (answer -> answer_verbs -> answer_objects, plus answer -> answer_objects for
# answers without a verb).
GRAPH_EDGES = (
    ("question", "question_type"),
    ("question", "subject"),
    ("question", "verbs"),
    ("question", "objects"),
    ("subject", "verbs"),
    ("verbs", "objects"),
    ("question_type", "answer"),
    ("question", "answer"),
    ("answer", "answer_verbs"),
    ("answer_verbs", "answer_objects"),
    ("answer", "answer_objects"),
)


def graph_adjacency() -> Tensor:
    """The GCN propagation matrix D^-1/2 (A + I) D^-1/2 of the fixed 8-node graph (Kipf & Welling), (G, G)."""
    index = {name: i for i, name in enumerate(GRAPH_NODES)}
    G = len(GRAPH_NODES)
    adjacency = torch.eye(G)
    for a, b in GRAPH_EDGES:
        adjacency[index[a], index[b]] = adjacency[index[b], index[a]] = 1.0
    inv_sqrt_degree = adjacency.sum(dim=1).rsqrt()
    return inv_sqrt_degree[:, None] * adjacency * inv_sqrt_degree[None, :]


@dataclass(frozen=True)
class ECIConfig:
    # Front-door intervention on the visual side (visual confounder dictionary).
    visual: bool = True
    # Back-door intervention on the language side (semantic-graph dictionary).
    linguistic: bool = True


def _checked_prior(prior: Tensor, count: int, what: str) -> Tensor:
    prior = torch.as_tensor(prior, dtype=torch.float32)
    if prior.shape != (count,):
        raise ValueError(f"{what} prior must have shape ({count},) (one entry per cluster), got {tuple(prior.shape)}")
    if not torch.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"{what} prior must be finite, non-negative and not all zero")
    return prior / prior.sum()


@dataclass(frozen=True)
class VisualDictionary:
    """Visual confounder dictionary: k-means centroids of frame features and their prior P(z)."""

    centroids: Tensor  # (Kv, Dv)
    prior: Tensor  # (Kv,), normalised to sum 1 on construction

    def __post_init__(self) -> None:
        centroids = torch.as_tensor(self.centroids, dtype=torch.float32)
        if centroids.ndim != 2 or centroids.shape[0] < 1:
            raise ValueError(f"visual dictionary centroids must have shape (Kv, Dv), got {tuple(centroids.shape)}")
        object.__setattr__(self, "centroids", centroids)
        object.__setattr__(self, "prior", _checked_prior(self.prior, centroids.shape[0], "visual dictionary"))


@dataclass(frozen=True)
class LanguageDictionary:
    """Language confounder dictionary: prototypes of the 8-node semantic graph (node embeddings) and P(z)."""

    prototypes: Tensor  # (Kl, G, Dt)
    prior: Tensor  # (Kl,), normalised to sum 1 on construction

    def __post_init__(self) -> None:
        prototypes = torch.as_tensor(self.prototypes, dtype=torch.float32)
        G = len(GRAPH_NODES)
        if prototypes.ndim != 3 or prototypes.shape[0] < 1 or prototypes.shape[1] != G:
            raise ValueError(
                f"language dictionary prototypes must have shape (Kl, {G}, Dt) (nodes {', '.join(GRAPH_NODES)}), "
                f"got {tuple(prototypes.shape)}"
            )
        object.__setattr__(self, "prototypes", prototypes)
        object.__setattr__(self, "prior", _checked_prior(self.prior, prototypes.shape[0], "language dictionary"))


@dataclass
class Intervention:
    """An intervened feature and the attention over dictionary entries that produced it."""

    feature: Tensor  # (B, D) visual, (B, A, D) linguistic
    weights: Tensor  # (B, Kv) visual, (B, A, Kl) linguistic: P(z | query), rows sum to 1


class FrontDoorIntervention(nn.Module):
    """P(Y | do(X)) = sum_m P(m | X) sum_x' P(x') P(Y | x', m), with the grounded segment as mediator m.

    The two sums are estimated with NWGM read-outs, as in causal attention (CATT):
    - in-sample, sum_m P(m | X) m: the GSG-weighted pooling of the frames, i.e. the mediator this
      module receives (it reads no frames itself, so nothing reaches the answer except through the
      grounding weights);
    - cross-sample, sum_x' P(x') x': the mediator attends over the visual dictionary, whose centroids
      stand for the values x' the video could have taken, weighted by the prior P(x').
    The read-out is fused with the mediator and added back (residual + LayerNorm).

    Where the official code differs: `Decoder.forward` in WissingChen/CRA-GQA `modules/m_cra/refine.py`
    passes `x_star` = the projected mean of *all* frames beside the grounded feature to its
    `VisualIntervention` (whose source is not public); we keep the mediator the grounded segment
    alone, so that the intervention cannot re-read frames the grounding left out.
    """

    def __init__(self, d_model: int, visual_dim: int, num_clusters: int) -> None:
        super().__init__()
        # Placeholders of the right shape; `load` copies the real dictionary in (and a checkpoint restores it).
        self.register_buffer("centroids", torch.zeros(num_clusters, visual_dim))
        self.register_buffer("prior", torch.full((num_clusters,), 1.0 / num_clusters))
        self.entry_proj = nn.Sequential(nn.Linear(visual_dim, d_model), nn.LayerNorm(d_model))
        # One head: the weights are then a single distribution over entries (the NWGM's P(z | m)).
        self.cross_sample = Attention(d_model, heads=1)
        self.fuse = nn.Linear(2 * d_model, d_model)
        self.norm = nn.LayerNorm(d_model)

    def reset_residual(self) -> None:
        """Zero the read-out's output layer, so the intervention starts as the identity (up to the norm)."""
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def load(self, dictionary: VisualDictionary) -> None:
        if dictionary.centroids.shape != self.centroids.shape:
            raise ValueError(
                f"visual dictionary has shape {tuple(dictionary.centroids.shape)}, the model expects "
                f"{tuple(self.centroids.shape)} (Kv, Dv)"
            )
        self.centroids.copy_(dictionary.centroids)
        self.prior.copy_(dictionary.prior)

    def forward(self, mediator: Tensor, standardize: Callable[[Tensor], Tensor] | None = None) -> Intervention:
        """mediator (B, D), the grounded video feature -> Intervention((B, D), (B, Kv)).

        `standardize` maps the raw-feature centroids as the backbone maps frames (same input space)."""
        B, D = mediator.shape
        query = mediator[:, None, :]  # (B, 1, D)
        centroids = self.centroids if standardize is None else standardize(self.centroids)
        entries = self.entry_proj(centroids)[None]  # (1, Kv, D), shared across the batch
        log_prior = self.prior.clamp_min(1e-12).log()[None]  # (1, Kv)
        cross_sample, weights = self.cross_sample(query, context=entries, bias=log_prior, return_weights=True)
        fused = self.fuse(torch.cat([query, cross_sample], dim=-1))[:, 0]  # (B, D)
        return Intervention(feature=self.norm(mediator + fused), weights=weights[:, 0])


class BackDoorIntervention(nn.Module):
    """P(Y | do(Q)) = sum_z P(Y | Q, z) P(z) over the semantic-graph confounder dictionary.

    The official `refine_forward` builds its `LinguisticInterventionGraph` but has the call commented out,
    so the released code runs without a linguistic intervention; we apply it to the answer candidates, as
    the paper describes, and `eci.linguistic: false` gives the released behaviour.

    Each prototype is a graph of 8 node embeddings; one graph convolution over the fixed adjacency
    (`GRAPH_EDGES`) mixes each node with its neighbours, and the G node outputs (D // G wide each) are
    concatenated into one confounder vector per prototype, as the reference code does with its GCN. Every
    QA candidate then attends over the confounders with the log-prior bias (NWGM), and the read-out is
    added back to the candidate (residual + LayerNorm).
    """

    def __init__(self, d_model: int, text_dim: int, num_clusters: int) -> None:
        super().__init__()
        G = len(GRAPH_NODES)
        node_dim = max(1, d_model // G)
        self.register_buffer("prototypes", torch.zeros(num_clusters, G, text_dim))
        self.register_buffer("prior", torch.full((num_clusters,), 1.0 / num_clusters))
        # Derived from the code constants above, so not saved with the checkpoint.
        self.register_buffer("adjacency", graph_adjacency(), persistent=False)
        self.node_proj = nn.Sequential(nn.Linear(text_dim, d_model), nn.LayerNorm(d_model))
        self.graph_conv = nn.Linear(d_model, node_dim)
        self.attention = Attention(d_model, heads=1, context_dim=G * node_dim)
        self.norm = nn.LayerNorm(d_model)

    def reset_residual(self) -> None:
        """Zero the read-out's output layer, so the intervention starts as the identity (up to the norm)."""
        nn.init.zeros_(self.attention.to_out.weight)
        nn.init.zeros_(self.attention.to_out.bias)

    def load(self, dictionary: LanguageDictionary) -> None:
        if dictionary.prototypes.shape != self.prototypes.shape:
            raise ValueError(
                f"language dictionary has shape {tuple(dictionary.prototypes.shape)}, the model expects "
                f"{tuple(self.prototypes.shape)} (Kl, G, Dt)"
            )
        self.prototypes.copy_(dictionary.prototypes)
        self.prior.copy_(dictionary.prior)

    def confounders(self) -> Tensor:
        """The graph-convolved dictionary, (Kl, G * (D // G))."""
        nodes = self.graph_conv(self.node_proj(self.prototypes))  # (Kl, G, D // G)
        nodes = torch.einsum("gh,khd->kgd", self.adjacency, nodes)  # propagate along the graph's edges
        return rearrange(nodes, "k g d -> k (g d)")

    def forward(self, candidates: Tensor) -> Intervention:
        """candidates (B, A, D) -> Intervention((B, A, D), (B, A, Kl))."""
        B, A, D = candidates.shape
        log_prior = self.prior.clamp_min(1e-12).log()[None]  # (1, Kl)
        read_out, weights = self.attention(
            candidates, context=self.confounders()[None], bias=log_prior, return_weights=True
        )  # (B, A, D), (B, A, Kl)
        return Intervention(feature=self.norm(candidates + read_out), weights=weights)


class ECI(nn.Module):
    """The two interventions; each is None when switched off (`eci.visual`, `eci.linguistic`)."""

    def __init__(
        self,
        config: ECIConfig,
        d_model: int,
        visual_dim: int,
        text_dim: int,
        visual_clusters: int,
        language_clusters: int,
    ) -> None:
        super().__init__()
        self.visual = FrontDoorIntervention(d_model, visual_dim, visual_clusters) if config.visual else None
        self.linguistic = BackDoorIntervention(d_model, text_dim, language_clusters) if config.linguistic else None

    def reset_residuals(self) -> None:
        """Start both interventions as the identity (called after the model-wide initialisation): a
        randomly initialised read-out added to every feature slows the start of training (measured)."""
        for intervention in (self.visual, self.linguistic):
            if intervention is not None:
                intervention.reset_residual()

    @torch.no_grad()
    def load_dictionaries(self, visual: VisualDictionary | None, language: LanguageDictionary | None) -> None:
        """Copy the confounder dictionaries into the buffers of the enabled interventions."""
        if self.visual is not None:
            if visual is None:
                raise ValueError("eci.visual is on but no visual confounder dictionary was given")
            self.visual.load(visual)
        if self.linguistic is not None:
            if language is None:
                raise ValueError("eci.linguistic is on but no language confounder dictionary was given")
            self.linguistic.load(language)

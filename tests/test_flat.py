"""The flat (K, P) buffer: layout, zero-copy views, groups of equal shapes."""

from __future__ import annotations

import pytest
import torch

from bench import strategies
from bench.flat import Layout, Views, groups, per_group

RUNS = 3
# An MLP-like list: weight, bias pairs with repeated shapes, then an output layer.
SHAPES = [(4, 5), (4,), (4, 4), (4,), (4, 4), (4,), (2, 4), (2,)]


def tensors(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(RUNS, *shape, generator=generator) for shape in SHAPES]


def test_buffer_groups_equal_shapes_in_order_of_first_appearance():
    layout = Layout.of(tensors())
    assert [indices for _, indices in layout.grouping] == [(0,), (1, 3, 5), (2, 4), (6,), (7,)]
    assert layout.order == (0, 1, 3, 5, 2, 4, 6, 7)
    assert layout.width == sum(torch.Size(shape).numel() for shape in SHAPES)


def test_split_inverts_join_and_join_of_views_is_the_buffer_itself():
    parts = tensors()
    layout = Layout.of(parts)
    flat = layout.join(parts)
    assert flat.shape == (RUNS, layout.width)
    views = layout.split(flat)
    assert all(torch.equal(v, p) for v, p in zip(views, parts, strict=True))
    assert layout.join(views) is flat
    # A plain list of the same views is copied, not trusted.
    copied = layout.join(list(views))
    assert torch.equal(copied, flat) and copied.data_ptr() != flat.data_ptr()
    # So is a Views list in which a tensor was replaced.
    views[1] = views[1] * 2
    changed = layout.join(views)
    assert changed.data_ptr() != flat.data_ptr() and torch.equal(changed, layout.join(list(views)))


def test_groups_are_views_of_the_buffer_and_match_stacked_copies():
    parts = tensors()
    layout = Layout.of(parts)
    views = layout.split(layout.join(parts))
    for viewed, stacked in zip(groups(views), groups(parts), strict=True):
        assert viewed.indices == stacked.indices
        assert torch.equal(viewed.data, stacked.data)
        assert viewed.data.untyped_storage().data_ptr() == views.buffer.untyped_storage().data_ptr()


def test_per_group_matches_per_tensor_arithmetic_in_one_new_buffer():
    parts = tensors()
    blocks = groups(parts)
    factors = [torch.rand(RUNS, len(b.indices), *[1] * (b.data.dim() - 2)) + 0.5 for b in blocks]
    for op in (torch.mul, torch.div):
        result = per_group(op, parts, factors)
        assert isinstance(result, Views)
        for block, factor in zip(blocks, factors, strict=True):
            for j, index in enumerate(block.indices):
                expected = op(parts[index], factor[:, j])
                assert torch.equal(result[index], expected)
        assert Layout.of(parts).join(result) is result.buffer


@pytest.mark.parametrize("name", ["agc", "max_norm", "clip_norm_layer", "trust_ratio", "update_clip"])
def test_grouped_strategies_give_the_same_bits_on_views_and_on_plain_tensors(name):
    grads, params = [g * 10 for g in tensors(1)], tensors(2)
    layout = Layout.of(grads)
    transform = strategies.make(name)
    state = transform.init(params)
    plain, _, plain_report = transform.update(grads, state, params)
    viewed, _, viewed_report = transform.update(layout.split(layout.join(grads)), state,
                                                layout.split(layout.join(params)))
    assert all(torch.equal(a, b) for a, b in zip(plain, viewed, strict=True))
    assert torch.equal(plain_report.active, viewed_report.active)
    assert plain_report.active.any()  # the case exercises the clipping, not only the pass-through

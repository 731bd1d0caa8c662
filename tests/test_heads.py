"""Every registered head: shapes, gradients, h-dependence, option checking, and the parameter
counts the paper's comparison relies on. Parametrised over ``head_names()``, so a newly
registered head is tested without editing this file."""

from __future__ import annotations

import pytest
import torch

from fovea.heads import PAPER_SIZES, build_head, check_head_options, count_parameters, head_names, head_option_names

TINY_SIZES = {"h_dim": 16, "latent_channels": 4, "height": 8, "width": 8}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is as fast and does not stall when the CPUs are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def inputs(sizes: dict[str, int], batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, sizes["h_dim"], generator=generator)
    z_prev = torch.randn(batch, sizes["latent_channels"], sizes["height"], sizes["width"], generator=generator)
    return h, z_prev


def tiny_head(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_head(name, **TINY_SIZES)


def test_all_five_heads_are_registered():
    assert set(head_names()) >= {"film", "mlp", "xattn", "sfilm", "stx"}


@pytest.mark.parametrize("name", head_names())
def test_output_shape_and_finite_at_tiny_sizes(name):
    h, z_prev = inputs(TINY_SIZES, batch=3)
    out = tiny_head(name)(h, z_prev)
    assert out.shape == z_prev.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", head_names())
def test_output_shape_at_non_square_sizes(name):
    sizes = {"h_dim": 12, "latent_channels": 3, "height": 6, "width": 10}
    h, z_prev = inputs(sizes)
    torch.manual_seed(0)
    out = build_head(name, **sizes)(h, z_prev)
    assert out.shape == z_prev.shape


@pytest.mark.parametrize("name", head_names())
def test_output_shape_and_finite_at_paper_sizes(name):
    h, z_prev = inputs(PAPER_SIZES, batch=2)
    torch.manual_seed(0)
    with torch.no_grad():
        out = build_head(name, **PAPER_SIZES)(h, z_prev)
    assert out.shape == (2, 4, 32, 32)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", head_names())
def test_every_parameter_gets_a_gradient(name):
    head = tiny_head(name)
    h, z_prev = inputs(TINY_SIZES, batch=3)
    # A random projection of the output, so no gradient vanishes by symmetry of the loss.
    weights = torch.randn(z_prev.shape, generator=torch.Generator().manual_seed(1))
    (head(h, z_prev) * weights).sum().backward()
    for param_name, param in head.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} has an all-zero gradient"


@pytest.mark.parametrize("name", head_names())
def test_output_depends_on_h(name):
    head = tiny_head(name)
    h, z_prev = inputs(TINY_SIZES, batch=2)
    with torch.no_grad():
        out = head(h, z_prev)
        out_other_h = head(h.flip(0), z_prev)
    assert not torch.allclose(out, out_other_h, atol=1e-6)


@pytest.mark.parametrize("name", head_names())
def test_samples_in_a_batch_are_independent(name):
    head = tiny_head(name)
    h, z_prev = inputs(TINY_SIZES, batch=3)
    with torch.no_grad():
        together = head(h, z_prev)
        alone = head(h[1:2], z_prev[1:2])
    torch.testing.assert_close(together[1:2], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "expected"), [("film", 1_300_612), ("mlp", 10_033_152)])
def test_parameter_counts_match_the_paper(name, expected):
    assert count_parameters(build_head(name, **PAPER_SIZES)) == expected


def test_unknown_head_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown head 'nope'") as error:
        build_head("nope", **TINY_SIZES)
    for name in head_names():
        assert name in str(error.value)


@pytest.mark.parametrize("name", head_names())
def test_check_head_options_rejects_unknown_names(name):
    valid = head_option_names(name)
    assert valid, f"{name} exposes no options"
    check_head_options(name, {valid[0]: None})  # only names are checked here
    with pytest.raises(ValueError, match=rf"heads\.{name}: unknown option\(s\) \['not_an_option'\]"):
        check_head_options(name, {"not_an_option": 1})


@pytest.mark.parametrize("name", head_names())
def test_model_sizes_are_not_options(name):
    assert not set(head_option_names(name)) & set(PAPER_SIZES)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("film", {"channels": []}),
        ("sfilm", {"channels": [16, 0]}),
        ("xattn", {"channels": [16], "heads": 3}),
        ("stx", {"channels": [16], "heads": 3}),
        ("stx", {"layers": 0}),
        ("mlp", {"hidden": 0}),
    ],
)
def test_bad_option_values_raise(name, options):
    with pytest.raises(ValueError):
        build_head(name, **TINY_SIZES, **options)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("film", {"channels": [8, 16], "film_hidden": 24}),
        ("sfilm", {"channels": [8], "film_hidden": 24, "pos_dim": 6}),
        ("xattn", {"channels": [8, 12], "heads": 3, "pos_dim": 5, "query_hidden": 7}),
        ("stx", {"channels": [12], "heads": 3, "layers": 3, "context_tokens": 2, "mlp_ratio": 2}),
        ("mlp", {"hidden": 32}),
    ],
)
def test_options_from_yaml_lists_build_working_heads(name, options):
    h, z_prev = inputs(TINY_SIZES)
    out = build_head(name, **TINY_SIZES, **options)(h, z_prev)
    assert out.shape == z_prev.shape

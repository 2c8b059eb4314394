"""progan-bench: FLOP counting against an independent count (docs/speed.md), and the JSON-lines output."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from progan_tf.bench import discriminator_flops, generator_flops, training_flops_per_image
from progan_tf.networks import Discriminator, Generator

B32 = dict(resolution=32, num_channels=1, fmap_base=2048, fmap_max=256)


def test_b32_training_flops_match_the_reference_count():
    """30.28 GFLOP per real image: the reference count for the separate (non-fused) layers."""
    G, D = Generator(**B32, fused_scale=False), Discriminator(**B32, fused_scale=False)
    assert generator_flops(G, 5) / 1e9 == pytest.approx(1.68, rel=0.01)      # "G forward 1.68"
    fg, fd = generator_flops(G, 5), discriminator_flops(D, 5)
    assert (fg + 12 * fd) / 1e9 == pytest.approx(21.87, rel=0.01)             # D step
    assert (3 * fg + 2 * fd) / 1e9 == pytest.approx(8.41, rel=0.01)           # G step
    assert training_flops_per_image(G, D, 5) / 1e9 == pytest.approx(30.28, rel=0.01)
    # A lower stage costs less: 16x16 drops the 32x32 block entirely.
    assert generator_flops(G, 4) < generator_flops(G, 5) / 2


def _profiled_forward_flops(net, spec):
    """TensorFlow's own count of the float ops in a traced forward pass (convs, matmuls and the
    small elementwise ops, which the model count leaves out)."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    graph = tf.function(lambda x: net(x)).get_concrete_function(spec).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return model_analyzer.profile(graph, options=options).total_float_ops


@pytest.mark.parametrize("fused", [False, True])
def test_forward_flops_are_those_tensorflow_executes(fused):
    import tensorflow as tf
    G, D = Generator(**B32, fused_scale=fused), Discriminator(**B32, fused_scale=fused)
    for ours, net, spec in ((generator_flops(G, 5), G, tf.TensorSpec([1, 256])),
                            (discriminator_flops(D, 5), D, tf.TensorSpec([1, 32, 32, 1]))):
        executed = _profiled_forward_flops(net, spec)
        assert ours <= executed and ours == pytest.approx(executed, rel=0.02)


def test_the_fused_layers_execute_fewer_flops():
    fused = training_flops_per_image(Generator(**B32), Discriminator(**B32), 5)
    separate = training_flops_per_image(Generator(**B32, fused_scale=False), Discriminator(**B32, fused_scale=False), 5)
    assert fused / 1e9 == pytest.approx(20.47, rel=0.01)
    assert separate / fused == pytest.approx(1.48, rel=0.01)


def test_cli_prints_one_json_object_per_figure():
    out = subprocess.run(
        [sys.executable, "-m", "progan_tf.bench", "--config=B32", "--seconds=0.2", "--repeats=2",
         "--figures=gen_img_s,data_img_s", "--fused_scale=on"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["name"] for r in lines] == ["gen_img_s", "data_img_s"]
    for r in lines:
        assert {"name", "median", "min", "max", "unit", "tensorflow", "threads", "xla", "precision", "cpu",
                "amx_bf16", "avx512_bf16", "gpus", "fused_scale"} <= r.keys()
        assert 0 < r["min"] <= r["median"] <= r["max"] and r["unit"] == "img/s"


def test_swd_rate_counts_images_per_side():
    from progan_tf.bench import swd_rate
    rates = swd_rate(seconds=0.01, repeats=2, num_images=64)
    assert len(rates) == 2 and all(r > 0 for r in rates)


def _ops_feeding(graph_outputs):
    """Types of the ops the given tensors depend on (what survives dead-code pruning)."""
    seen, stack, types = set(), [t.op for t in graph_outputs], []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        types.append(op.type)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return types


def test_conv_rate_step_runs_every_conv_it_counts():
    """The reference rate counts forward, input-gradient and weight-gradient convs; each
    must feed the result, or grappler prunes it and the rate comes out too high."""
    from progan_tf.bench import conv_flops, conv_rate_step
    G = Generator(**B32)          # fused: each fused layer counts as the plain 3x3 conv it fuses
    step, flops = conv_rate_step(G, minibatch=4)
    graph = step.get_concrete_function().graph
    types = _ops_feeding(graph.outputs)
    n = sum(len(G.convs[r]) for r in range(3, 6))                  # 8x8, 16x16 and 32x32: 2 convs each
    assert n == 6
    assert types.count("Conv2D") == n
    assert types.count("Conv2DBackpropInput") == n
    assert types.count("Conv2DBackpropFilter") == n
    plain = Generator(**B32, fused_scale=False)
    assert flops == 3 * 4 * sum(conv_flops(c, 2 ** r) for r in range(3, 6) for c in plain.convs[r])


def test_gflop_figures_report_float32_and_bfloat16_machine_rates():
    from progan_tf.bench import run_benchmark
    results = run_benchmark("B32", seconds=0.01, repeats=1, figures=["train_gflop_s"], fused_scale=False)
    names = [(r["name"], r.get("kernel_dtype")) for r in results]
    assert names == [("train_gflop_s", None),
                     ("conv3x3_fwd_bwd_gflop_s", "float32"), ("matmul_gflop_s", "float32"),
                     ("conv3x3_fwd_bwd_gflop_s", "bfloat16"), ("matmul_gflop_s", "bfloat16"),
                     ("mfu", "float32")]
    by_name = {(r["name"], r.get("kernel_dtype")): r for r in results}
    assert by_name[("train_gflop_s", None)]["gflop_per_image"] == pytest.approx(30.28, rel=0.01)
    conv32 = by_name[("conv3x3_fwd_bwd_gflop_s", "float32")]["median"]
    gflops = by_name[("train_gflop_s", None)]["median"]
    assert by_name[("mfu", "float32")]["median"] == pytest.approx(gflops / conv32, rel=1e-6)

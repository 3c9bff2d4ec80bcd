"""Learning speed: training samples/s and inference ms per frame on one core, for the default model.

The default model is the one ``agents/e2e.toml`` describes (PilotNet-style at 33x100). Inference
is timed end to end as the agent does it (resize of the 200x66 dashcam frame + forward pass,
batch 1) with ``torch.set_num_threads(1)``; training is one AdamW step on batches of 64 with
the end2end loss, also on one thread. The median over rounds is reported (shared machines).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

#: The bench's target for one inference on one core [ms] (issue 5).
INFERENCE_TARGET_MS = 2.0
#: The target for the temporal model (issue 14): the CNN on the newest frame + the GRU over k frames' features.
TEMPORAL_INFERENCE_TARGET_MS = 4.0
#: The conditional (command-input) feedforward and temporal models the suite recipe trains (issue 14).
SUITE_MODELS: dict[str, dict[str, Any]] = {
    "conditional": {"command_embedding_dim": 8, "command_distance_scale_m": 300.0},
    "temporal k=4": {"arch": "pilotnet_gru", "sequence_length": 4, "gru_hidden_size": 64,
                     "command_embedding_dim": 8, "command_distance_scale_m": 300.0},
}


def time_agent_step(table: dict[str, Any], quick: bool = False) -> tuple[float, float]:
    """(median wall ms, median CPU ms) of one agent step for the model ``table`` describes, as E2EAgent does it on one thread: resize,
    the CNN on the newest frame, the GRU over the last k frames' cached features (temporal), the heads."""
    import torch

    from e2e_drive.nets.models import ModelConfig, build_model
    from e2e_drive.nets.preprocessing import preprocess

    torch.manual_seed(0)
    config = ModelConfig.from_dict(table, "bench model")
    model = build_model(config).eval()
    frame = np.random.default_rng(0).integers(0, 256, (66, 200, 3), dtype=np.uint8)
    extra = (torch.tensor([25.0]), torch.tensor([3]), torch.tensor([250.0]))
    history: list = []

    def step() -> None:
        feats = model.features(torch.from_numpy(preprocess(frame, config))[None])
        if config.temporal:
            history.append(feats)
            del history[:-config.sequence_length]
            feats = torch.stack(history + [feats] * (config.sequence_length - len(history)), dim=1)
        model.heads(feats, *extra)

    rounds, per_round = (3, 50) if quick else (7, 200)
    times, cpu_times = [], []
    with torch.inference_mode():
        for _ in range(20):
            step()
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                step()
            times.append((time.perf_counter() - t0) / per_round)
            cpu_times.append((time.process_time() - c0) / per_round)
    return 1000 * statistics.median(times), 1000 * statistics.median(cpu_times)


def bench_learning(quick: bool = False) -> dict[str, Any]:
    """Measure {"inference_ms_per_frame", "train_samples_per_s", "parameters", "checkpoint_mb", ...}."""
    import io

    import torch

    from e2e_drive.learning.config import TrainConfig
    from e2e_drive.learning.train import losses
    from e2e_drive.nets.models import ModelConfig, build_model, count_parameters
    from e2e_drive.nets.preprocessing import preprocess

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        config = ModelConfig()
        model = build_model(config).eval()
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (66, 200, 3), dtype=np.uint8)
        speed = torch.tensor([25.0])
        rounds, per_round = (3, 50) if quick else (7, 200)
        times, cpu_times = [], []
        with torch.inference_mode():
            for _ in range(20):
                model(torch.from_numpy(preprocess(frame, config))[None], speed)
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(per_round):
                    model(torch.from_numpy(preprocess(frame, config))[None], speed)
                times.append((time.perf_counter() - t0) / per_round)
                cpu_times.append((time.process_time() - c0) / per_round)
        inference_ms = 1000 * statistics.median(times)
        inference_cpu_ms = 1000 * statistics.median(cpu_times)

        model.train()
        cfg = TrainConfig()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
        batch = {"frame": torch.randint(0, 256, (cfg.batch_size, 3, config.input_height_px, config.input_width_px),
                                        dtype=torch.uint8),
                 "speed": torch.rand(cfg.batch_size) * 30, "action": torch.rand(cfg.batch_size, 2) * 2 - 1,
                 "labels": torch.zeros(cfg.batch_size, config.n_labels)}
        steps = 3 if quick else 10
        rates, cpu_rates = [], []
        for r in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(steps):
                loss = losses(model, batch, cfg, "cpu")["action"]
                opt.zero_grad()
                loss.backward()
                opt.step()
            if r:  # the first round warms up
                rates.append(steps * cfg.batch_size / (time.perf_counter() - t0))
                cpu_rates.append(steps * cfg.batch_size / max(time.process_time() - c0, 1e-9))
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        suite = {name: time_agent_step(table, quick) for name, table in SUITE_MODELS.items()}
        return {"suite_models_ms_per_frame": suite, "inference_ms_per_frame": inference_ms, "inference_cpu_ms_per_frame": inference_cpu_ms, "train_samples_per_s": statistics.median(rates),
                "train_samples_per_cpu_s": statistics.median(cpu_rates),
                "parameters": count_parameters(model), "checkpoint_mb": len(buf.getvalue()) / 1e6,
                "input": f"{config.input_width_px}x{config.input_height_px}", "arch": config.arch}
    finally:
        torch.set_num_threads(threads)


def bench_and_format(quick: bool = False) -> str:
    r = bench_learning(quick)
    ok = "meets" if r["inference_ms_per_frame"] < INFERENCE_TARGET_MS else "MISSES"
    return "\n".join([
        f"default model: {r['arch']} at {r['input']}, {r['parameters']:,} parameters, "
        f"checkpoint {r['checkpoint_mb']:.2f} MB",
        f"inference (resize + forward, batch 1, 1 thread): {r['inference_ms_per_frame']:.2f} ms/frame wall "
        f"({ok} the {INFERENCE_TARGET_MS:.0f} ms target), {r['inference_cpu_ms_per_frame']:.2f} ms CPU time "
        f"(wall includes waiting for a shared core)",
        f"training (AdamW step, batch 64, 1 thread):       {r['train_samples_per_s']:.0f} samples/s wall, "
        f"{r['train_samples_per_cpu_s']:.0f} samples per CPU second",
        *[f"agent step, {name} model (command input; 1 thread): {ms:.2f} ms/frame wall, {cpu:.2f} ms CPU time "
          f"(target {TEMPORAL_INFERENCE_TARGET_MS if 'temporal' in name else INFERENCE_TARGET_MS:.0f} ms; "
          f"CPU-time ratio to the default model {cpu / r['inference_cpu_ms_per_frame']:.2f})"
          for name, (ms, cpu) in r["suite_models_ms_per_frame"].items()],
    ])


if __name__ == "__main__":
    print(bench_and_format())

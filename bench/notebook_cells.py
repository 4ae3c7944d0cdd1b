"""The notebook's first-half analysis cells, as written, for any p and task, timed on CPU.

Run by the ANCHOR's python (TransformerLens 3.9's HookedTransformer), not by the project's:

    $ANCHOR_PY bench/notebook_cells.py --ckpt FILE.pth [--anchor-dir ../shared/anchor] [--threads 2]

It loads a notebook save file (``torch.save`` of the notebook's dict; seed_train.py writes one),
builds the model and the data with the anchor's own ``build_cfg`` / ``build_data`` (imported
from ``--anchor-dir``, as seed_analysis.py does), and runs the cells of
grokking_demo_integer_addition from "Show Model Training Statistics" to "Singular Value
Decomposition": the loss-curve data, run_with_cache and the key weight matrices, the PCA/SVD
cells, the per-sample ``run_with_hooks`` activation loop and the LinearRegression probe, the
pearsonr loop, the per-sample pre/post heatmap loops of the top-3 neurons, the PC fit, the
PC1-only ablation (a Python loop over rows inside the hook), the "Looking at Activations"
attention-pattern cells and the SVD-versus-random control. seed_analysis.py runs the same
cells for the p=10 addition model only; this script is them with the notebook's hard-coded
p=10 constants replaced by the file's p:

* ``N = p`` and ``equals_token_id = p`` (the loops run over all p*p pairs);
* labels per task: ``a + b`` for integer addition (d_vocab_out = 2p), ``(a + b) % p`` for
  modular addition (d_vocab_out = p), in the probe target, the ablation's test labels and
  the loss;
* ``target_neuron_idx = 240`` -> the top-ranked neuron (240 is one neuron of the notebook's
  own run);
* the PC fit's rows ``a + b < N`` only for addition (that condition comes from a sum that
  must stay a token); every row for modular addition.

Plots are left out; the tensors handed to them are kept (``utils.to_numpy``, as the
notebook's plot helpers do). The notebook's prints are kept inside the timings (captured,
the first lines echoed under each ``[time]`` line). Per-sample loops stay per-sample: that is
the notebook's cost. Imports are not timed (as in seed_analysis.py).
"""
import argparse
import contextlib
import io
import os
import sys
import time


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("GROK_SHARED_DIR", os.path.join(os.path.dirname(os.path.dirname(here)), "shared"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="notebook save file (.pth)")
    ap.add_argument("--anchor-dir", default=os.path.join(shared, "anchor"),
                    help="folder of seed_train.py (build_cfg, build_data, loss_fn)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the anchor's default 2)")
    ap.add_argument("--data-seed", type=int, default=598)
    return ap.parse_args()


ARGS = parse_args()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import einops  # noqa: E402
import transformer_lens.utils as utils  # noqa: E402
from scipy.stats import pearsonr  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.metrics import mean_squared_error, r2_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402
from transformer_lens.hook_points import HookPoint  # noqa: E402,F401  (as in the notebook)

sys.path.insert(0, ARGS.anchor_dir)
from seed_train import build_cfg, build_data, loss_fn  # noqa: E402

TIMES = []  # (label, ms, group): group "analysis" = a cell seed_analysis.py also times


@contextlib.contextmanager
def timed(label, group="analysis"):
    """seed_analysis.py's timed(label); the cell's prints are captured and echoed after."""
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        yield
    ms = 1e3 * (time.perf_counter() - t0)
    TIMES.append((label, ms, group))
    print(f"[time] {label:<66s} {ms:10.2f} ms")
    out = buf.getvalue().splitlines()
    for line in out[:6]:
        print(f"       | {line[:150]}")
    if len(out) > 6:
        print(f"       | ... ({len(out) - 6} more lines)")


def _plot(*data):
    """Stands in for line / imshow / plt: keeps the data conversion, drops the figure."""
    for x in data:
        if isinstance(x, (list, tuple)):
            [utils.to_numpy(e) for e in x]
        else:
            utils.to_numpy(x)


def task_of(cached_data):
    """('add' | 'mod', p) from the pickled HookedTransformerConfig."""
    cfg = cached_data["config"]
    p = int(cfg.d_vocab) - 1
    if cfg.d_vocab_out == 2 * p:
        return "add", p
    if cfg.d_vocab_out == p:
        return "mod", p
    raise SystemExit(f"d_vocab_out={cfg.d_vocab_out} fits neither add (2p) nor mod (p) for p={p}")


def main():
    torch.set_num_threads(ARGS.threads)
    # the file's config decides p and the task (untimed: seed_analysis knows them beforehand)
    cfg_peek = torch.load(ARGS.ckpt, weights_only=False)
    task, p = task_of(cfg_peek)
    n_train = len(cfg_peek["train_indices"])
    del cfg_peek
    frac_train = n_train / (p * p)
    d = build_data(task, p, frac_train, ARGS.data_seed)
    dataset, labels = d["dataset"], d["labels"]

    def label_of(a, b):
        """The task's label for one pair (the notebook's a + b, for its addition task)."""
        return a + b if task == "add" else (a + b) % p

    with timed("load checkpoint + build model + load_state_dict"):
        cached_data = torch.load(ARGS.ckpt, weights_only=False)
        model = HookedTransformer(build_cfg(task, p))
        for name, param in model.named_parameters():
            if "b_" in name:
                param.requires_grad = False
        model.load_state_dict(cached_data["model"])
        train_losses = cached_data["train_losses"]
        test_losses = cached_data["test_losses"]

    # ## Show Model Training Statistics
    with timed("loss-curve data (line of train/test losses every 100 epochs)", "extra"):
        _plot([train_losses[::100], test_losses[::100]])
        np.arange(0, len(train_losses), 100)

    # # Analysing the Model / ## Standard Things to Try
    with timed("run_with_cache(dataset)"):
        original_logits, cache = model.run_with_cache(dataset)
        print(original_logits.numel())
    with timed("key weight matrices W_E / W_neur / W_logit + original loss"):
        W_E = model.embed.W_E[:-1]
        print("W_E", W_E.shape)
        W_neur = W_E @ model.blocks[0].attn.W_V @ model.blocks[0].attn.W_O @ model.blocks[0].mlp.W_in
        print("W_neur", W_neur.shape)
        W_logit = model.blocks[0].mlp.W_out @ model.unembed.W_U
        print("W_logit", W_logit.shape)
        original_loss = loss_fn(original_logits, labels).item()
        print("Original Loss:", original_loss)

    # PCA of W_E (two cells: the centred SVD, then the explained-variance ratios printed)
    with timed("PCA of W_E (centre + torch.linalg.svd + variance ratios)"):
        W_E_mean = W_E.mean(dim=0, keepdim=True)
        W_E_centered = W_E - W_E_mean
        U, S, Vt = torch.linalg.svd(W_E_centered, full_matrices=False)
        pca_scores = U * S
        principal_components = Vt
        explained_variance = S.square() / (W_E.shape[0] - 1)
        total_variance = explained_variance.sum()
        explained_variance_ratio = explained_variance / total_variance
        _plot(pca_scores[:, 0].detach())
        explained_variance = S.square() / W_E.shape[0]
        total_variance = explained_variance.sum()
        explained_variance_ratio = explained_variance / total_variance
        explained_variance_ratio_np = explained_variance_ratio.detach().cpu().numpy()
        print("Explained Variance Ratio by Principal Component:")
        num_components_to_print = min(len(explained_variance_ratio_np), 10)
        cumulative_variance = 0.0
        for i in range(num_components_to_print):
            ratio = explained_variance_ratio_np[i]
            cumulative_variance += ratio
            print(f"  PC{i+1}: {ratio:.4f} ({ratio*100:.2f}%) \t| Cumulative: {cumulative_variance:.4f} "
                  f"({cumulative_variance*100:.2f}%)")
        np.cumsum(explained_variance_ratio_np)
        _plot(pca_scores[:, 1].detach(), pca_scores[:, 0].detach())
    evr = explained_variance_ratio_np

    # ---- Step 3: per-sample loop collecting blocks.0.mlp.hook_post at '=' ----
    captured_mlp_activations = []

    def store_mlp_post_activation_hook(activation, hook):
        target_activation = activation[:, 2, :].detach().cpu()
        captured_mlp_activations.append(target_activation)
        return activation

    mlp_hook_point_name = "blocks.0.mlp.hook_post"
    with timed(f"per-sample loop: {len(dataset)} x run_with_hooks (hook_post)"):
        activation_list = []
        target_sums = []
        print(f"Processing {len(dataset)} input pairs...")
        for a, b, equals in dataset:
            input_tokens = torch.tensor([[a, b, equals]], dtype=torch.long)
            captured_mlp_activations.clear()
            _ = model.run_with_hooks(
                input_tokens,
                fwd_hooks=[(mlp_hook_point_name, store_mlp_post_activation_hook)]
            )
            if captured_mlp_activations:
                mlp_activation_vector = captured_mlp_activations[0][0].numpy()
                activation_list.append(mlp_activation_vector)
                target_sums.append(label_of(a, b))
            else:
                print(f"Warning: Hook did not capture activation for pair ({a}, {b})")
        print(f"Collected {len(activation_list)} activation vectors.")
        X_probe = np.array(activation_list)
        y_probe = np.array([item.cpu().numpy() for item in target_sums])
        print("X_probe:", X_probe.shape)
        print("y_probe:", y_probe.shape)

    with timed("LinearRegression probe (split + fit + predict + metrics)"):
        X_train, X_test, y_train, y_test = train_test_split(X_probe, y_probe, test_size=0.3, random_state=42)
        probe_model = LinearRegression()
        probe_model.fit(X_train, y_train)
        y_pred = probe_model.predict(X_test)
        mse = mean_squared_error(y_test, y_pred)
        r2 = r2_score(y_test, y_pred)
        print(f"  Mean Squared Error (MSE): {mse:.4f}")
        print(f"  R-squared (R2): {r2:.4f}")
        baseline_pred = np.full_like(y_test, y_train.mean())
        baseline_mse = mean_squared_error(y_test, baseline_pred)
        baseline_r2 = r2_score(y_test, baseline_pred)
        print(f"  Baseline MSE: {baseline_mse:.4f}")
        print(f"  Baseline R2: {baseline_r2:.4f}")

    with timed(f"pearsonr loop over {model.cfg.d_mlp} neurons (+ sort + top-140 print)"):
        X_probe = np.asarray(X_probe)
        y_probe = np.asarray(y_probe)
        num_samples, d_mlp = X_probe.shape
        neuron_sum_correlations = np.zeros(d_mlp)
        for i in range(d_mlp):
            correlation, _ = pearsonr(X_probe[:, i], y_probe)
            neuron_sum_correlations[i] = correlation
        neuron_sum_correlations = np.nan_to_num(neuron_sum_correlations)
        print(f"Calculated correlations for {d_mlp} neurons.")
        top_n = min(140, d_mlp)
        indices_sorted_by_abs_corr = np.argsort(np.abs(neuron_sum_correlations))[::-1]
        print(f"\nTop {top_n} neurons by absolute correlation with sum (a+b):")
        for i in range(top_n):
            idx = indices_sorted_by_abs_corr[i]
            print(f"  Neuron {idx}: Correlation = {neuron_sum_correlations[idx]:.4f}")
    n_gt09 = int((neuron_sum_correlations > 0.9).sum())
    n_abs_gt09 = int((np.abs(neuron_sum_correlations) > 0.9).sum())

    # ---- heatmap loops for the top-3 neurons over the N x N grid (post, then pre) ----
    equals_token_id = p  # the notebook: 10
    N = p  # the notebook: 10
    top_n_to_visualize = 3
    top_neuron_indices = indices_sorted_by_abs_corr[:top_n_to_visualize]

    neuron_activation_heatmaps = {idx: np.full((N, N), np.nan) for idx in top_neuron_indices}
    captured_mlp_activation_storage = {}

    def capture_mlp_post_hook(activation, hook):
        captured_mlp_activation_storage['activation'] = activation[:, 2, :].detach().cpu()
        return activation

    with timed(f"{N}x{N} heatmap loop, top-3 neurons, hook_post (no_grad)"):
        print(f"Generating activations for {top_n_to_visualize} neurons across {N}x{N} grid...")
        model.eval()
        with torch.no_grad():
            for a in range(N):
                for b in range(N):
                    input_tokens = torch.tensor([[a, b, equals_token_id]], dtype=torch.long)
                    captured_mlp_activation_storage.clear()
                    _ = model.run_with_hooks(input_tokens, fwd_hooks=[(mlp_hook_point_name, capture_mlp_post_hook)])
                    if 'activation' in captured_mlp_activation_storage:
                        full_activation_vector = captured_mlp_activation_storage['activation'][0]
                        for neuron_idx in top_neuron_indices:
                            neuron_activation_heatmaps[neuron_idx][a, b] = full_activation_vector[neuron_idx].item()
        print("Activation generation complete.")

    mlp_hook_point_name_pre = "blocks.0.mlp.hook_pre"
    neuron_pre_activation_heatmaps = {idx: np.full((N, N), np.nan) for idx in top_neuron_indices}
    captured_mlp_pre_activation_storage = {}

    def capture_mlp_pre_hook(activation, hook):
        captured_mlp_pre_activation_storage['activation'] = activation[:, 2, :].detach().cpu()
        return activation

    with timed(f"{N}x{N} heatmap loop, top-3 neurons, hook_pre (no_grad)"):
        print(f"Generating PRE-ReLU activations for {len(top_neuron_indices)} neurons across {N}x{N} grid...")
        model.eval()
        with torch.no_grad():
            for a in range(N):
                for b in range(N):
                    input_tokens = torch.tensor([[a, b, equals_token_id]], dtype=torch.long)
                    captured_mlp_pre_activation_storage.clear()
                    _ = model.run_with_hooks(input_tokens, fwd_hooks=[(mlp_hook_point_name_pre, capture_mlp_pre_hook)])
                    if 'activation' in captured_mlp_pre_activation_storage:
                        full_activation_vector = captured_mlp_pre_activation_storage['activation'][0]
                        for neuron_idx in top_neuron_indices:
                            neuron_pre_activation_heatmaps[neuron_idx][a, b] = full_activation_vector[neuron_idx].item()
        print("PRE-ReLU activation generation complete.")

    # ---- the pre-ReLU fit of one neuron on the PC scores (the notebook: neuron 240) ----
    target_neuron_idx = top_neuron_indices[0]
    with timed("pre-ReLU top neuron ~ PCA-features LinearRegression"):
        feature_list, target_activation_list = [], []
        pca_scores_np = pca_scores.detach().cpu().numpy().astype(np.float32)
        pre_activation_target_neuron = neuron_pre_activation_heatmaps[target_neuron_idx]
        for a in range(N):
            for b in range(N):
                if task != "add" or a + b < N:  # the notebook's "Only use valid sums" (addition)
                    target_activation = pre_activation_target_neuron[a, b]
                    if not np.isnan(target_activation):
                        pc1_a = pca_scores_np[a, 0]
                        pc2_a = pca_scores_np[a, 1]
                        pc1_b = pca_scores_np[b, 0]
                        pc2_b = pca_scores_np[b, 1]
                        features = [pc1_a, pc2_a, pc1_b, pc2_b]
                        feature_list.append(features)
                        target_activation_list.append(target_activation)
        X_features_for_neuron_model = np.array(feature_list, dtype=np.float32)
        y_target_neuron_pre_activation = np.array(target_activation_list, dtype=np.float32)
        feature_names = ['PC1(a)', 'PC2(a)', 'PC1(b)', 'PC2(b)']
        print(f"Prepared data for modeling neuron {target_neuron_idx}:")
        print(f"  X_features shape: {X_features_for_neuron_model.shape}")
        neuron_model = LinearRegression()
        neuron_model.fit(X_features_for_neuron_model, y_target_neuron_pre_activation)
        y_neuron_pred = neuron_model.predict(X_features_for_neuron_model)
        r2_neuron_fit = r2_score(y_target_neuron_pre_activation, y_neuron_pred)
        print(f"  R-squared of fit: {r2_neuron_fit:.4f}")
        coeffs = pd.Series(neuron_model.coef_, index=feature_names)
        print(coeffs)
        print(f"  Intercept: {neuron_model.intercept_:.4f}")

    # ---- PC1-only ablation ("PC2 ablation"): the hook loops over rows and positions ----
    W_E_mean_gpu = W_E_mean.to(model.cfg.device)
    pc1_vec = principal_components[0].to(model.cfg.device)
    pc2_vec = principal_components[1].to(model.cfg.device)  # noqa: F841  (as written)
    W_E_mean_1d_gpu = W_E_mean_gpu.squeeze(0)

    def ablate_pc2_hook(activation, hook):
        ablated_activation = activation.clone()
        for batch_idx in range(activation.shape[0]):
            for seq_idx in [0, 1]:
                emb = activation[batch_idx, seq_idx, :]
                emb_centered = emb - W_E_mean_1d_gpu
                score_pc1 = torch.dot(emb_centered, pc1_vec)
                emb_centered_ablated = score_pc1 * pc1_vec
                emb_ablated = emb_centered_ablated + W_E_mean_1d_gpu
                ablated_activation[batch_idx, seq_idx, :] = emb_ablated
        return ablated_activation

    embedding_hook_point = "hook_embed"

    def calculate_accuracy(logits, labels):
        prediction_logits = logits[:, -1, :]
        predicted_tokens = torch.argmax(prediction_logits, dim=-1)
        correct_predictions = (predicted_tokens == labels).sum().item()
        total_predictions = labels.shape[0]
        return correct_predictions / total_predictions, correct_predictions, total_predictions

    with timed("PC1-only ablation: single-input run_with_hooks (grad on, as written)"):
        logits = model.run_with_hooks(input_tokens, fwd_hooks=[(embedding_hook_point, ablate_pc2_hook)])
    with timed(f"PC1-only ablation: build {N * N}-pair test set + original accuracy"):
        test_pairs, test_labels_list = [], []
        for a in range(N):
            for b in range(N):
                test_pairs.append([a, b, equals_token_id])
                test_labels_list.append(label_of(a, b))
        test_input_tokens = torch.tensor(test_pairs, dtype=torch.long).to(model.cfg.device)
        test_labels = torch.tensor(test_labels_list, dtype=torch.long).to(model.cfg.device)
        print(f"Created test data with {test_input_tokens.shape[0]} samples.")
        model.eval()
        with torch.no_grad():
            original_logits = model(test_input_tokens)
            original_accuracy, orig_correct, orig_total = calculate_accuracy(original_logits, test_labels)
        print(f"  Accuracy: {original_accuracy:.4f} ({orig_correct}/{orig_total})")
    with timed(f"PC1-only ablation: ablated run_with_hooks on {N * N} pairs (py-loop hook)"):
        with torch.no_grad():
            ablated_logits = model.run_with_hooks(test_input_tokens, fwd_hooks=[(embedding_hook_point, ablate_pc2_hook)])
            ablated_accuracy, ablated_correct, ablated_total = calculate_accuracy(ablated_logits, test_labels)
        print(f"  Accuracy: {ablated_accuracy:.4f} ({ablated_correct}/{ablated_total})")
        print(f"\nAccuracy Drop due to PC2 Ablation: {original_accuracy - ablated_accuracy:.4f}")
    with timed("PC1-only ablation: failing-pairs table (pandas) + heatmap"):
        ablated_logits_last_pos = ablated_logits[:, -1, :]
        ablated_predicted_tokens = torch.argmax(ablated_logits_last_pos, dim=-1)
        incorrect_mask = (ablated_predicted_tokens != test_labels)
        incorrect_indices = torch.where(incorrect_mask)[0].cpu().numpy()
        failing_pairs = []
        original_a_values = test_input_tokens[:, 0].cpu().numpy()
        original_b_values = test_input_tokens[:, 1].cpu().numpy()
        true_sums = test_labels.cpu().numpy()
        predicted_sums_ablated = ablated_predicted_tokens.cpu().numpy()
        for idx in incorrect_indices:
            a = original_a_values[idx]
            b = original_b_values[idx]
            true_sum = true_sums[idx]
            predicted_sum = predicted_sums_ablated[idx]
            failing_pairs.append({'a': a, 'b': b, 'True Sum (a+b)': true_sum,
                                  'Predicted Sum (Ablated)': predicted_sum})
        if not failing_pairs:
            print("No failures found after PC2 ablation (unexpected based on previous accuracy).")
        else:
            print(f"Found {len(failing_pairs)} failures after PC2 ablation:")
            fail_df = pd.DataFrame(failing_pairs)
            fail_df = fail_df.sort_values(by=['True Sum (a+b)', 'a', 'b']).reset_index(drop=True)
            print(fail_df.to_string())
        failure_heatmap = np.zeros((N, N))
        for failure in failing_pairs:
            failure_heatmap[failure['a'], failure['b']] = 1

    # ### Looking at Activations (attention from '=', neuron acts)
    with timed("Looking at Activations: helper variables", "extra"):
        pattern_a = cache["pattern", 0, "attn"][:, :, -1, 0]  # noqa: F841
        pattern_b = cache["pattern", 0, "attn"][:, :, -1, 1]  # noqa: F841
        neuron_acts = cache["post", 0, "mlp"][:, -1, :]
        neuron_pre_acts = cache["pre", 0, "mlp"][:, -1, :]  # noqa: F841
    with timed("Looking at Activations: all cache shapes", "extra"):
        for param_name, param in cache.items():
            print(param_name, param.shape)
    with timed("Attention: average pattern per head from '=' (+ input 5's)", "extra"):
        _plot(cache["pattern", 0].mean(dim=0)[:, -1, :])
        _plot(cache["pattern", 0][5][:, -1, :])
        print(repr(dataset[:4]))
    with timed("Attention: head 0 a -> = over (a, b), then every head", "extra"):
        _plot(cache["pattern", 0][:, 0, -1, 0].reshape(p, p))
        _plot(einops.rearrange(cache["pattern", 0][:, :, -1, 0], "(a b) head -> head a b", a=p, b=p))
    with timed("Neuron activations: first-5 neurons over (a, b)", "extra"):
        print(repr(cache["post", 0, "mlp"].shape))
        _plot(einops.rearrange(neuron_acts[:, :5], "(a b) neuron -> neuron a b", a=p, b=p))

    # ### Singular Value Decomposition (W_E against a random Gaussian control)
    with timed("SVD: torch.svd(W_E) (+ S, U plot data)", "extra"):
        print(repr(W_E.shape))
        U, S, Vh = torch.svd(W_E)
        _plot(S, U)
    with timed("SVD control: torch.svd(randn_like(W_E))", "extra"):
        U, S, Vh = torch.svd(torch.randn_like(W_E))
        _plot(S, U)

    mean_pattern = cache["pattern", 0].mean(dim=0)[:, -1, :]
    total = sum(ms for _l, ms, _g in TIMES)
    print("=" * 78)
    print(f"RESULT notebook_cells ({task} p={p}, {p * p} inputs, ckpt {ARGS.ckpt}, threads {torch.get_num_threads()})")
    for label, ms, group in TIMES:
        print(f"  {'' if group == 'analysis' else '+ '}{label:<66s} {ms:10.2f} ms")
    print(f"  TOTAL of the cells seed_analysis.py also times (no '+')                {sum(ms for _l, ms, g in TIMES if g == 'analysis'):10.2f} ms")
    print(f"  TOTAL notebook analysis cells (all of the above)                       {total:10.2f} ms")
    print(f"  results: PC1 {evr[0]:.4f} PC2 {evr[1]:.4f} | probe R2 {r2:.4f} MSE {mse:.4f} | "
          f"corr>0.9 neurons {n_gt09} (|corr|>0.9: {n_abs_gt09}) | top neuron {int(target_neuron_idx)} "
          f"PC-fit R2 {r2_neuron_fit:.4f} | orig acc {original_accuracy:.4f} PC1-only acc {ablated_accuracy:.4f} "
          f"failing {len(failing_pairs)} | mean attention from '=' to a/b/= "
          f"{[round(float(x), 4) for x in mean_pattern.mean(0)]}")


if __name__ == "__main__":
    main()

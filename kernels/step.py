"""The whole training step, and inference, as single compiled calls.

:func:`train_step_kernel` runs forward (GEMM + fused bias/activation, normalisation, dropout), the
loss and its gradient, backward, L2, gradient clipping and the optimizer update of one batch in one
call from Python; :func:`forward_kernel` runs the forward pass alone (inference). Both compose the
serial building blocks of the other kernel modules (the GEMM of :mod:`~fastnn.kernels.blas`, the
epilogues of :mod:`~fastnn.kernels.dense`, the loss rows of :mod:`~fastnn.kernels.losses`, the
normalisation kernels, the optimizer blocks), so every number they produce is computed by the
same code, in the same order, as the operation-by-operation path of the Numba backend.

The network arrives as offset tables (see :mod:`fastnn.backends.plan`): ``table`` (L, 18) int64
offsets of every layer's parameters in the arena and of its work buffers in one flat buffer
``flat``; views are made here. So the call has a fixed number of arguments whatever the depth, and
one compiled version per dtype serves every architecture.

Compiling only what a run uses
------------------------------
The per-layer choices (activation, normalisation, dropout) are codes in ``table``, read at run
time, so one compiled step serves every architecture; but a compiled step then contains every
option's code, and a first run would compile all of it (every normalisation, both heads, all
four optimizer rules). *Switches* prevent that: a switch argument is ``None`` when no layer (or
no update) needs an option and ``True`` when one does, and each option's code sits behind
``if switch is not None``. Numba types a ``None`` argument as ``NoneType`` and prunes such
branches before type inference, so an option a run does not use is neither typed nor compiled;
a run with other options compiles (and caches) a variant of its own. :data:`RULE_SWITCHES`
gives each optimizer rule's four switches; :attr:`fastnn.backends.plan.StepPlan.kernel_args`
ends with the plan's six (batch norm, layer norm, dropout, softmax head, MSE head, and ``smooth``:
an activation other than identity, ReLU and leaky ReLU, whose loops are otherwise compiled away).

Training diagnostics
--------------------
With ``diagnose`` true, each hidden layer's output is added to the activation statistics
(:class:`fastnn.backends.plan.ActivationStats`: per-unit activity and saturation counts, sums
and sums of squares) right after the layer's forward pass, while the output is in cache, by
:func:`fastnn.kernels.diagnostics.activation_stats_kernel`. ``diagnose`` is a run-time flag
rather than a switch: the statistics are a few small loops, and one compiled step then serves
runs with and without diagnostics.

Memory traffic of the update
----------------------------
Without gradient clipping, each layer is updated as soon as its gradients are complete (after its
``dX`` GEMM, which is the last read of its weights in the step): its weights, gradients and
optimizer state are touched once, while ``W`` and ``dW`` are still in cache from the GEMMs, instead
of in a separate pass over the whole arena afterwards. Clipping needs the global gradient norm
first, so with clipping the update is one pass over the arena after the backward pass. The update
rules are elementwise, so both orders give bit-identical parameters.

Two threads
-----------
With ``pair`` (the calling thread's mailbox, :mod:`fastnn.kernels.pair`), the step hands halves of
its large GEMMs and parts of its large updates to a second thread, which runs them while the
step runs the others (:func:`~fastnn.kernels.pair.pair_gemm`,
:func:`~fastnn.kernels.pair.pair_update`); everything else stays on the calling thread. ``pair``
is a switch like the others: ``None`` compiles none of it.
"""

from __future__ import annotations

import inspect
import math

from fastnn.kernels import kernel
from fastnn.kernels.activations import IDENTITY, activate_row
from fastnn.kernels.pair import pair_begin, pair_end, pair_gemm, pair_update
from fastnn.kernels.dense import activation_grad_rows, bias_activation_rows
from fastnn.kernels.diagnostics import activation_stats_kernel
from fastnn.kernels.fpmode import flush_subnormals_begin, flush_subnormals_end
from fastnn.kernels.losses import (l2_block, mse_block, mse_weighted_rows, softmax_cross_entropy_rows,
                                   softmax_rows)
from fastnn.kernels.normalization import (batch_norm_backward_kernel, batch_norm_forward_kernel,
                                          layer_norm_backward_kernel, layer_norm_forward_kernel)
from fastnn.kernels.optimizers import (NO_UPDATE, RULE_ADAM, RULE_NADAM, RULE_RMSPROP, RULE_SGD,
                                       apply_rule as _apply_rule)
from fastnn.kernels.regularisation import (clip_grad_norm_kernel, dropout_backward_kernel,
                                           dropout_forward_kernel)

# Codes and table columns: this module's copy of fastnn.backends.plan's (a test compares them).
HEAD_SOFTMAX, HEAD_MSE = 0, 1
NORM_NONE, NORM_BATCH, NORM_LAYER = 0, 1, 2
(COL_D, COL_H, COL_W, COL_B, COL_ACT, COL_OUT, COL_PREACT, COL_DOUT, COL_DROPPED, COL_MASK,
 COL_UNIFORM, COL_NORM, COL_LINEAR, COL_MEAN, COL_INV_STD, COL_GAMMA, COL_BETA, COL_RUNNING) = range(18)
HEAD_KIND, HEAD_PROBS, HEAD_TARGETS, HEAD_STATS_SCRATCH = range(4)
#: Slots of the ``result`` array the step writes.
RES_DATA_LOSS, RES_PENALTY, RES_CORRECT, RES_GRAD_NORM, RES_UPDATED = range(5)
#: ``result[RES_UPDATED]`` when a label was outside [0, C): the step stopped before writing anything.
BAD_LABELS = -1.0
#: The switches ``(sgd, rmsprop, adam, nadam)`` of :func:`train_step_kernel` for each rule kind:
#: ``True`` for the rule that runs, ``None`` (compiled away) for the others.
RULE_SWITCHES = {NO_UPDATE: (None, None, None, None), RULE_SGD: (True, None, None, None),
                 RULE_RMSPROP: (None, True, None, None), RULE_ADAM: (None, None, True, None),
                 RULE_NADAM: (None, None, None, True)}


@kernel(inline="always")
def _rows(flat, offset, n, h):
    """The (n, h) C-contiguous view of ``flat`` starting at ``offset``."""
    return flat[offset: offset + n * h].reshape(n, h)


@kernel(inline="always")
def _norm_views(flat, table, arena, l, N, H):
    """A normalised layer's buffers: Z (linear output), U (normalised), γ, β, mean, inv_std."""
    norm = table[l, COL_NORM]
    stat = H if norm == NORM_BATCH else N
    Zl = _rows(flat, table[l, COL_LINEAR], N, H)
    U = _rows(flat, table[l, COL_PREACT], N, H)
    gamma = arena[table[l, COL_GAMMA]: table[l, COL_GAMMA] + H]
    beta = arena[table[l, COL_BETA]: table[l, COL_BETA] + H]
    mean = flat[table[l, COL_MEAN]: table[l, COL_MEAN] + stat]
    inv_std = flat[table[l, COL_INV_STD]: table[l, COL_INV_STD] + stat]
    return Zl, U, gamma, beta, mean, inv_std


@kernel()
def _dense_layer_forward(a, N, l, flat, table, arena, running_mean, running_var, slope, norm_eps,
                         bn_momentum, training, blas, batch_norm, layer_norm, smooth, pair):
    """Layer ``l`` of the forward pass on its (N, D) input ``a`` (flat view): writes the layer's
    output (and pre-activation / normalisation buffers) into ``flat``. ``batch_norm``,
    ``layer_norm``, ``smooth``: switches (module docstring)."""
    D, H = table[l, COL_D], table[l, COL_H]
    W = arena[table[l, COL_W]: table[l, COL_W] + D * H]
    b = arena[table[l, COL_B]: table[l, COL_B] + H]
    code = table[l, COL_ACT]
    out = _rows(flat, table[l, COL_OUT], N, H)
    norm = table[l, COL_NORM]
    # without either switch, this branch is all that is compiled (its return leaves the rest dead)
    if (batch_norm is None and layer_norm is None) or norm == NORM_NONE:
        pre = table[l, COL_PREACT]
        z_off = pre if pre >= 0 else table[l, COL_OUT]
        Z = _rows(flat, z_off, N, H)
        pair_gemm(pair, blas, False, False, N, H, D, a, D, W, H, flat[z_off: z_off + N * H], H)
        bias_activation_rows(Z, b, code, slope, out, smooth)
        return
    lin_off = table[l, COL_LINEAR]
    Zl, U, gamma, beta, mean, inv_std = _norm_views(flat, table, arena, l, N, H)
    pair_gemm(pair, blas, False, False, N, H, D, a, D, W, H, flat[lin_off: lin_off + N * H], H)
    bias_activation_rows(Zl, b, int(IDENTITY), slope, Zl, smooth)  # int(): not a literal's type
    if batch_norm is not None and norm == NORM_BATCH:
        r = table[l, COL_RUNNING]
        batch_norm_forward_kernel(Zl, gamma, beta, U, mean, inv_std, running_mean[r: r + H],
                                  running_var[r: r + H], training, bn_momentum, norm_eps)
    elif layer_norm is not None:
        layer_norm_forward_kernel(Zl, gamma, beta, U, mean, inv_std, norm_eps)
    for i in range(N):
        activate_row(U[i], out[i], code, slope, smooth)


@kernel()
def _hidden_stats(Y, l, unit, flat, scratch, stat_bands, stat_counts, stat_sums):
    """Add hidden layer ``l``'s output ``Y`` (N, H) to the activation statistics' columns
    ``[unit, unit + H)`` (:class:`fastnn.backends.plan.ActivationStats`); ``flat[scratch:]``:
    2 H elements of scratch."""
    H = Y.shape[1]
    end = unit + H
    activation_stats_kernel(Y, stat_bands[l, 0], stat_bands[l, 1], stat_bands[l, 2],
                            stat_counts[0, unit:end], stat_counts[1, unit:end],
                            stat_sums[0, unit:end], stat_sums[1, unit:end],
                            flat[scratch: scratch + H], flat[scratch + H: scratch + 2 * H])


@kernel()
def _forward(X, flat, table, rates, arena, running_mean, running_var, slope, norm_eps,
             bn_momentum, training, blas, batch_norm, layer_norm, dropout, smooth, diagnose,
             stat_bands, stat_counts, stat_sums, scratch, pair):
    """The forward pass over every layer; dropout (``training`` only) from the drawn uniforms.
    ``batch_norm``, ``layer_norm``, ``dropout``, ``smooth``: switches (module docstring); ``pair``:
    the mailbox of :mod:`fastnn.kernels.pair` or None (a switch too).
    ``diagnose``: add each hidden layer's output to the activation statistics ``stat_bands``,
    ``stat_counts``, ``stat_sums`` right after it is computed (while it is in cache), with
    ``flat[scratch:]`` as scratch (:func:`train_step_kernel`)."""
    N = X.shape[0]
    L = table.shape[0]
    in_off = -1
    unit = int(0)  # int(): a literal 0 would compile _hidden_stats a second time, for Literal[int](0)
    for l in range(L):
        if l == 0:
            _dense_layer_forward(X.reshape(-1), N, l, flat, table, arena, running_mean, running_var,
                                 slope, norm_eps, bn_momentum, training, blas, batch_norm,
                                 layer_norm, smooth, pair)
        else:
            D = table[l, COL_D]
            _dense_layer_forward(flat[in_off: in_off + N * D], N, l, flat, table, arena,
                                 running_mean, running_var, slope, norm_eps, bn_momentum, training,
                                 blas, batch_norm, layer_norm, smooth, pair)
        H = table[l, COL_H]
        in_off = table[l, COL_OUT]
        if diagnose and l < L - 1:
            _hidden_stats(_rows(flat, in_off, N, H), l, unit, flat, scratch, stat_bands,
                          stat_counts, stat_sums)
            unit += H
        if dropout is not None and training and table[l, COL_DROPPED] >= 0:
            dropout_forward_kernel(_rows(flat, table[l, COL_OUT], N, H),
                                   _rows(flat, table[l, COL_UNIFORM], N, H), rates[l],
                                   _rows(flat, table[l, COL_DROPPED], N, H),
                                   _rows(flat, table[l, COL_MASK], N, H))
            in_off = table[l, COL_DROPPED]


@kernel()
def forward_kernel(X, training, blas, flat, table, rates, head_table, arena, grad, running_mean,
                   running_var, label_smoothing, l2, slope, norm_eps, bn_momentum, result,
                   batch_norm, layer_norm, dropout, softmax_head, mse_head, smooth, diagnose,
                   stat_bands, stat_counts, stat_sums, pair):
    """Inference: the forward pass in evaluation mode (no dropout; BatchNorm's running statistics).

    X : (N, D) float, read only. training : pass False (evaluation mode). It is an argument, not
    a constant here, so that the forward pass is compiled once for this kernel and
    :func:`train_step_kernel` (a literal ``False`` would be a type of its own: a second
    compilation of the whole forward pass on a first run). blas : GEMM handle. The other
    arguments are the plan's (:attr:`StepPlan.kernel_args`; ``grad``, ``head_table``, the loss
    constants, ``result`` and the head switches are not used). ``flat``'s output views are
    overwritten (the network output is the last layer's ``COL_OUT`` view). Nothing else is
    written. diagnose, stat_bands, stat_counts, stat_sums : pass False and arrays of
    :func:`train_step_kernel`'s types (any size): like ``training``, arguments so that the forward
    pass is one compilation for both kernels. pair : as for :func:`train_step_kernel`.
    """
    threads = -1
    if pair is not None:
        threads = pair_begin(pair, X)
    _forward(X, flat, table, rates, arena, running_mean, running_var, slope, norm_eps, bn_momentum,
             training, blas, batch_norm, layer_norm, dropout, smooth, diagnose, stat_bands,
             stat_counts, stat_sums, head_table[HEAD_STATS_SCRATCH], pair)
    if pair is not None:
        pair_end(pair, threads)


@kernel()
def _loss(labels, has_labels, targets, has_targets, weights, weighted, total_weight, N, flat,
          table, head_table, label_smoothing, softmax_head, mse_head):
    """The head's loss on the last layer's output; its gradient into the last layer's ``dout``.
    ``softmax_head``, ``mse_head``: switches (module docstring)."""
    last = table.shape[0] - 1
    C = table[last, COL_H]
    out = _rows(flat, table[last, COL_OUT], N, C)
    dout = _rows(flat, table[last, COL_DOUT], N, C)
    if softmax_head is not None and head_table[HEAD_KIND] == HEAD_SOFTMAX:
        probs = _rows(flat, head_table[HEAD_PROBS], N, C)
        if weighted and total_weight == 0.0:  # no weight in the batch: loss and gradient zero
            softmax_rows(out, probs)
            for i in range(N):
                for j in range(C):
                    dout[i, j] = 0.0
            return 0.0
        return softmax_cross_entropy_rows(out, labels, weights, weighted, probs, dout,
                                          label_smoothing, total_weight) / total_weight
    if mse_head is None:
        return 0.0
    if has_targets:
        T = targets
    else:
        T = _rows(flat, head_table[HEAD_TARGETS], N, C)  # one-hot labels
        for i in range(N):
            for j in range(C):
                T[i, j] = 0.0
            T[i, labels[i]] = 1.0
    return _mse(out, T, dout, weights, weighted, total_weight)


@kernel()
def _mse(Y, T, dY, weights, weighted, total_weight):
    N, C = Y.shape
    if not weighted:
        n = N * C
        return mse_block(Y.reshape(-1), T.reshape(-1), dY.reshape(-1), 2.0 / n) / n
    if total_weight == 0.0:
        for i in range(N):
            for j in range(C):
                dY[i, j] = 0.0
        return 0.0
    return mse_weighted_rows(Y, T, dY, weights, 2.0 / (C * total_weight)) / (C * total_weight)


@kernel()
def _count_correct(out, labels, weights, weighted):
    """Rows whose first maximal output (``np.argmax``: NaN counts as maximal) equals the label;
    their total weight when ``weighted``."""
    N, C = out.shape
    total = 0.0
    for i in range(N):
        best, arg = out[i, 0], 0
        if not math.isnan(best):
            for j in range(1, C):
                v = out[i, j]
                if math.isnan(v):
                    arg = j
                    break
                if v > best:
                    best, arg = v, j
        if arg == labels[i]:
            total += weights[i] if weighted else 1.0
    return total


@kernel()
def _layer_backward(a, N, l, flat, table, arena, grad, slope, training, blas, batch_norm,
                    layer_norm, dropout, smooth, pair):
    """Layer ``l``'s backward pass from its ``dout`` (∂L/∂output) and its (N, D) input ``a`` (flat
    view): ``dout`` becomes ∂L/∂Z; dW, db (and dγ, dβ) written into ``grad``; ∂L/∂input into the
    previous layer's ``dout`` (not for the first layer). ``batch_norm``, ``layer_norm``,
    ``dropout``, ``smooth``: switches (module docstring)."""
    D, H = table[l, COL_D], table[l, COL_H]
    code = table[l, COL_ACT]
    out = _rows(flat, table[l, COL_OUT], N, H)
    dout_off = table[l, COL_DOUT]
    dout = _rows(flat, dout_off, N, H)
    if dropout is not None and training and table[l, COL_DROPPED] >= 0:
        dropout_backward_kernel(dout, _rows(flat, table[l, COL_MASK], N, H))
    norm = table[l, COL_NORM]
    pre = table[l, COL_PREACT]
    if (batch_norm is None and layer_norm is None) or norm == NORM_NONE:  # (as in the forward)
        if code != IDENTITY:
            Z = _rows(flat, pre, N, H) if pre >= 0 else out
            activation_grad_rows(out, Z, dout, code, slope, smooth)
    else:
        Zl, U, gamma, _, mean, inv_std = _norm_views(flat, table, arena, l, N, H)
        if code != IDENTITY:
            activation_grad_rows(out, U, dout, code, slope, smooth)
        dgamma = grad[table[l, COL_GAMMA]: table[l, COL_GAMMA] + H]
        dbeta = grad[table[l, COL_BETA]: table[l, COL_BETA] + H]
        if batch_norm is not None and norm == NORM_BATCH:
            batch_norm_backward_kernel(Zl, gamma, mean, inv_std, dout, dgamma, dbeta, training)
        elif layer_norm is not None:
            layer_norm_backward_kernel(Zl, gamma, mean, inv_std, dout, dgamma, dbeta)
    w_off, b_off = table[l, COL_W], table[l, COL_B]
    dflat = flat[dout_off: dout_off + N * H]
    pair_gemm(pair, blas, True, False, D, H, N, a, D, dflat, H, grad[w_off: w_off + D * H], H)
    db = grad[b_off: b_off + H]
    for j in range(H):
        db[j] = 0.0
    for i in range(N):
        for j in range(H):
            db[j] += dout[i, j]
    if l > 0:
        dx_off = table[l - 1, COL_DOUT]
        pair_gemm(pair, blas, False, True, N, D, H, dflat, H, arena[w_off: w_off + D * H], H,
             flat[dx_off: dx_off + N * D], D)


@kernel()
def _backward_and_update(X, training, max_norm, kind, coefficients, sgd, rmsprop, adam, nadam, s1,
                         s2, s3, blas, flat, table, arena, grad, l2, slope, batch_norm, layer_norm,
                         dropout, smooth, pair, finite):
    """The backward pass of :func:`train_step_kernel` from the loss gradient in the last layer's
    ``dout``: every layer's gradients into ``grad`` (with L2), clipping when ``max_norm > 0``, and
    the update when ``kind != NO_UPDATE`` and the loss was ``finite`` (per layer while its
    gradients are in cache without clipping; module docstring). Returns ``(Σ‖W‖², gradient norm
    before clipping, 0.0 without clipping)``.

    Every parameter but ``finite`` (a bool) is the step's own argument of that name, passed
    unchanged, so this function's signature is known before the step is typed
    (:func:`backward_signature`) and a helper process can compile it while the run compiles the
    forward pass (:mod:`fastnn.background_compile`)."""
    N = X.shape[0]
    L = table.shape[0]
    per_layer = kind != NO_UPDATE and max_norm <= 0.0 and finite
    squares = 0.0
    for l in range(L - 1, -1, -1):
        if l == 0:
            _layer_backward(X.reshape(-1), N, l, flat, table, arena, grad, slope, training, blas,
                            batch_norm, layer_norm, dropout, smooth, pair)
        else:
            prev = table[l - 1, COL_DROPPED] if training and table[l - 1, COL_DROPPED] >= 0 \
                else table[l - 1, COL_OUT]
            D = table[l, COL_D]
            _layer_backward(flat[prev: prev + N * D], N, l, flat, table, arena, grad, slope,
                            training, blas, batch_norm, layer_norm, dropout, smooth, pair)
        w_off, D, H = table[l, COL_W], table[l, COL_D], table[l, COL_H]
        if l2 != 0.0:
            squares += l2_block(arena[w_off: w_off + D * H], grad[w_off: w_off + D * H], l2)
        if per_layer:  # this layer's gradients are final: update it while they are in cache
            pair_update(pair, w_off, w_off + D * H, kind, coefficients, sgd, rmsprop, adam,
                        nadam, arena, grad, s1, s2, s3)
            b_off = table[l, COL_B]
            pair_update(pair, b_off, b_off + H, kind, coefficients, sgd, rmsprop, adam,
                        nadam, arena, grad, s1, s2, s3)
            if table[l, COL_NORM] != NORM_NONE:
                g_off = table[l, COL_GAMMA]
                pair_update(pair, g_off, g_off + 2 * H, kind, coefficients, sgd, rmsprop,
                            adam, nadam, arena, grad, s1, s2, s3)
    norm = 0.0
    if max_norm > 0.0:
        norm = clip_grad_norm_kernel(grad, max_norm)
    if kind != NO_UPDATE and finite and not per_layer:
        pair_update(pair, 0, arena.shape[0], kind, coefficients, sgd, rmsprop, adam, nadam,
                    arena, grad, s1, s2, s3)
    return squares, norm


@kernel()
def train_step_kernel(X, labels, has_labels, targets, has_targets, weights, weighted, total_weight,
                      training, max_norm, kind, coefficients, sgd, rmsprop, adam, nadam, s1, s2, s3,
                      blas, flat, table, rates, head_table, arena, grad, running_mean, running_var,
                      label_smoothing, l2, slope, norm_eps, bn_momentum, result, batch_norm,
                      layer_norm, dropout, softmax_head, mse_head, smooth, diagnose, stat_bands,
                      stat_counts, stat_sums, pair):
    """One training step of a batch in one call.

    Parameters
    ----------
    X : (N, D) float, read only. labels : (N,) intp in [0, C) (any (N,) intp array when
        ``has_labels`` is false). targets : (N, C) float targets of an MSE head when
        ``has_targets`` (else any 2-d float array). weights : (N,) float sample weights when
        ``weighted``; total_weight : their float64 sum (N unweighted).
    The arguments from ``flat`` on are the plan's (:attr:`StepPlan.kernel_args`), in that order.
    flat, table, rates, head_table : the plan's work buffer and tables
        (:class:`fastnn.backends.plan.StepPlan`); ``flat``'s views are overwritten (the layers'
        outputs, gradients, masks, statistics; the dropout uniforms are read).
    arena : (P,) parameters, **updated in place** by the rule (and only when the loss is finite).
    grad : (P,) **overwritten** with the gradient of the objective (clipped when ``max_norm > 0``).
    running_mean, running_var : BatchNorm's running statistics, updated in place when ``training``.
    label_smoothing, l2, slope, norm_eps, bn_momentum : the model's constants.
    training : dropout and batch statistics on. max_norm : clip the gradients' global norm to this
        when > 0 (:func:`clip_grad_norm_kernel`).
    kind, coefficients, s1, s2, s3 : the optimizer's :class:`~fastnn.backends.plan.UpdateRule`
        (``kind == NO_UPDATE``: gradients only). sgd, rmsprop, adam, nadam : the rule's switches,
        ``RULE_SWITCHES[kind]`` (only that rule's code is compiled).
    batch_norm, layer_norm, dropout, softmax_head, mse_head, smooth : the plan's switches (the
        last six of its ``kernel_args``; module docstring).
    diagnose : bool; when true, each hidden layer's output statistics are added to
        ``stat_bands`` (L-1, 3) float64 (read), ``stat_counts`` (2, ΣH) int32 and ``stat_sums``
        (2, ΣH) float64 (updated in place) as :class:`fastnn.backends.plan.ActivationStats`
        defines them, right after the layer's forward pass. A run-time flag, not a switch: the
        statistics are a few small loops, and one compilation then serves runs with and without
        diagnostics (a first ``fastnn train``, diagnostics on by default, and a benchmark or an
        API user's loop without them share the cache). Without it, pass any arrays of those types.
    blas : GEMM handle (:func:`fastnn.kernels.blas.gemm`).
    pair : the calling thread's mailbox of :mod:`fastnn.kernels.pair` (int64 array), whose worker
        thread then runs half of each large GEMM and part of each large update, or None (a
        switch: no such code is compiled). Results are the same either way, bit for bit.
    result : (5,) float64, **overwritten**: data loss, L2 penalty, correct count (or weight),
        gradient norm before clipping (0 without clipping), 1.0 when the update was applied.
        With labels, each is checked first: one outside [0, C) sets ``result[RES_UPDATED]`` to
        :data:`BAD_LABELS` and returns before anything else is read or written.

    The step runs with flush-to-zero and denormals-are-zero set on the calling thread (its own
    arithmetic, the optimizer update included; not the BLAS's other threads), restored before it
    returns: a result that would be subnormal (below ~1.2e-38 in float32) is 0, which spares the
    microcode assists subnormals cost on many x86 cores (:mod:`fastnn.kernels.fpmode`).
    """
    N = X.shape[0]
    L = table.shape[0]
    if has_labels:  # checked here, before anything is written: one pass over N labels
        C = table[L - 1, COL_H]
        for i in range(N):
            if labels[i] < 0 or labels[i] >= C:
                result[RES_UPDATED] = BAD_LABELS
                return
    mxcsr = flush_subnormals_begin()  # this thread's work flushes subnormals (kernels/fpmode.py)
    threads = -1
    if pair is not None:
        threads = pair_begin(pair, X)
    _forward(X, flat, table, rates, arena, running_mean, running_var, slope, norm_eps, bn_momentum,
             training, blas, batch_norm, layer_norm, dropout, smooth, diagnose, stat_bands,
             stat_counts, stat_sums, head_table[HEAD_STATS_SCRATCH], pair)
    data_loss = _loss(labels, has_labels, targets, has_targets, weights, weighted, total_weight, N,
                      flat, table, head_table, label_smoothing, softmax_head, mse_head)
    last = L - 1
    correct = 0.0
    if has_labels:
        correct = _count_correct(_rows(flat, table[last, COL_OUT], N, table[last, COL_H]), labels,
                                 weights, weighted)
    finite = math.isfinite(data_loss)
    squares, norm = _backward_and_update(X, training, max_norm, kind, coefficients, sgd, rmsprop,
                                         adam, nadam, s1, s2, s3, blas, flat, table, arena, grad,
                                         l2, slope, batch_norm, layer_norm, dropout, smooth, pair,
                                         finite)
    if pair is not None:
        pair_end(pair, threads)
    flush_subnormals_end(mxcsr)
    result[RES_DATA_LOSS] = data_loss
    result[RES_PENALTY] = 0.5 * l2 * squares
    result[RES_CORRECT] = correct
    result[RES_GRAD_NORM] = norm
    result[RES_UPDATED] = 1.0 if kind != NO_UPDATE and finite else 0.0


def _parameters(function) -> tuple[str, ...]:
    return tuple(inspect.signature(getattr(function, "py_func", function)).parameters)


def backward_signature(step_args: tuple) -> tuple:
    """The argument types with which :func:`train_step_kernel`, called from Python with
    ``step_args``, calls :func:`_backward_and_update`: the Numba types of its own arguments of the
    same names (what the dispatcher gives them), and ``boolean`` for ``finite``. Compiling
    ``_backward_and_update`` for it ahead (``_backward_and_update.compile(signature)``, in another
    process sharing the cache) spares the step that part of its own compilation."""
    import numba

    by_name = dict(zip(_parameters(train_step_kernel), step_args))
    return tuple(numba.types.boolean if name == "finite" else numba.typeof(by_name[name])
                 for name in _parameters(_backward_and_update))

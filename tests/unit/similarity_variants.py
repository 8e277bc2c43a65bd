"""A class of honest students for `course similarity`: each of a2's functions written several ways people
really write them, a student's notebook made of one way per function (renamed, for a copier), written where
nbgrader keeps submissions.  Shared by test_similarity.py and benchmarks/similarity.py."""
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "a2-losses"
NOTEBOOK = "losses.ipynb"

# Honest students: for each function, one of several ways people really write it.
VARIANTS = {
    "softmax": [
        "    z = np.asarray(logits, dtype=float) / temperature\n    z = z - z.max(axis=axis, keepdims=True)\n"
        "    e = np.exp(z)\n    return e / e.sum(axis=axis, keepdims=True)",
        "    scaled = np.array(logits, dtype=np.float64) / temperature\n"
        "    shifted = np.exp(scaled - np.max(scaled, axis=axis, keepdims=True))\n"
        "    total = np.sum(shifted, axis=axis, keepdims=True)\n    return shifted / total",
        "    x = np.asarray(logits, np.float64)\n    x = x / temperature\n    m = np.amax(x, axis, keepdims=True)\n"
        "    out = np.exp(x - m)\n    out /= out.sum(axis, keepdims=True)\n    return out",
    ],
    "logsumexp": [
        "    x = np.asarray(x, dtype=np.float64)\n    m = np.max(x, axis=axis, keepdims=True)\n"
        "    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))",
        "    arr = np.array(x, dtype=float)\n    biggest = arr.max(axis=axis)\n"
        "    return biggest + np.log(np.exp(arr - np.expand_dims(biggest, axis)).sum(axis=axis))",
        "    v = np.asarray(x, float)\n    peak = np.amax(v, axis=axis, keepdims=True)\n    s = np.exp(v - peak)\n"
        "    s = s.sum(axis=axis, keepdims=True)\n    return (peak + np.log(s)).squeeze(axis)",
    ],
    "binary_cross_entropy": [
        "    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)\n    y = np.asarray(labels, dtype=np.float64)\n"
        "    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))",
        "    probs = np.minimum(np.maximum(np.array(probs, float), eps), 1.0 - eps)\n    labels = np.array(labels, float)\n"
        "    losses = -(labels * np.log(probs)) - (1.0 - labels) * np.log(1.0 - probs)\n    return float(losses.mean())",
        "    q = np.asarray(probs, np.float64).clip(eps, 1 - eps)\n    t = np.asarray(labels, np.float64)\n"
        "    total = 0.0\n    for qi, ti in zip(q.ravel(), t.ravel()):\n"
        "        total -= ti * np.log(qi) + (1 - ti) * np.log(1 - qi)\n    return float(total / q.size)",
    ],
    "entropy": [
        "    p = np.asarray(p, dtype=np.float64)\n    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)\n"
        "    return -np.sum(terms, axis=-1)",
        "    probs = np.array(p, dtype=float)\n    logs = np.zeros_like(probs)\n    mask = probs > 0\n"
        "    logs[mask] = np.log(probs[mask])\n    return -(probs * logs).sum(axis=-1)",
        "    q = np.asarray(p, float)\n    with np.errstate(divide='ignore', invalid='ignore'):\n"
        "        h = -np.nansum(q * np.log(q), axis=-1)\n    return h",
    ],
}


def student_notebook(release, choices, rename=None):
    """The release with each chosen variant in place of its stub (and, for a copier, names changed)."""
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in choices:
            body = VARIANTS[grade_id][choices[grade_id]]
            if rename:
                for old, new in rename.items():
                    body = re.sub(rf"\b{old}\b", new, body)
                body = "    # my own work\n" + body.replace("\n", "\n\n")
            cell.source = re.sub(r"    # YOUR CODE HERE\n    raise NotImplementedError\(\)", lambda _: body, cell.source)
    return nb


def write(folder, student, nb):
    path = folder / student / ASSIGNMENT / NOTEBOOK
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path

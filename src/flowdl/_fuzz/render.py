"""A description written as the builder chain it stands for: the short reproducer.

Modules are written by kind and seed (``tanh#52/1``: a tanh leaf taking one ref),
nested graphs as indented chains ending in ``.label(uid)``, and the calls as their
batch sizes (``reset`` before a ``reset_state()``).
"""

from __future__ import annotations

from flowdl._fuzz.ir import (
    Also,
    Description,
    Fork,
    Gate,
    GraphSpec,
    Halt,
    Leaf,
    Loop,
    Map,
    Merge,
    Module,
    Router,
    Selector,
    Split,
    Step,
    Switch,
    Tag,
    Through,
)


def _leaf(leaf: Leaf) -> str:
    shape = f"{leaf.din}->{leaf.dout}" if leaf.din != leaf.dout else ""
    refs = f"/{leaf.arity}" if leaf.arity else ""
    refs += ":named" if leaf.named else ""
    return f"{leaf.kind}#{leaf.seed}{refs}{'[' + shape + ']' if shape else ''}"


def _module(module: Module, indent: str) -> str:
    if isinstance(module, Leaf):
        return _leaf(module)
    return _chain(module, indent + "    ")


def _modules(modules: tuple[Module, ...], indent: str) -> str:
    return ", ".join(_module(m, indent) for m in modules)


def _halt(halt: Halt | None) -> str:
    if halt is None:
        return "?"
    if halt.kind == "learned":
        return f"LearnedHalt#{halt.seed}"
    return f"{halt.kind}({halt.level})"


def _router(router: Router) -> str:
    if router.kind == "topk":
        renormalize = "" if router.renormalize is None else f", renormalize={router.renormalize}"
        return f"TopKRouter#{router.seed}(n={router.n}, k={router.k}{renormalize})"
    return f"{router.kind.capitalize()}Router#{router.seed}(n={router.n})"


def _selector(selector: Selector) -> str:
    if selector.kind == "fixed":
        return f"FixedSelector({selector.index})"
    if selector.kind == "argmax":
        return f"ArgmaxSelector#{selector.seed}(n={selector.n})"
    return f"{selector.kind}_selector(n={selector.n})"


def _merge(merge: Merge | None) -> str:
    if merge is None:
        return ""
    if merge.kind == "cat" and merge.project is not None:
        return f".merge(Cat(-1)).through({_leaf(merge.project)})"
    return f".merge({merge.kind})"


def _step(step: Step, indent: str) -> str:
    using = ""
    if not isinstance(step, (Tag, Map)) and step.refs:
        using = f".using({', '.join(map(repr, step.refs))})"
    if isinstance(step, Tag):
        if step.group:
            return f".tag_group({step.name!r})"
        init = f", init={step.init.kind}#{step.init.seed}" if step.init else ""
        return f".tag({step.name!r}{init})"
    if isinstance(step, Through):
        return f".through({_module(step.module, indent)}){using}"
    if isinstance(step, Also):
        return f".also({_module(step.module, indent)}){using}"
    if isinstance(step, Fork):
        shared = ", shared=True" if step.shared else ""
        return f".fork({_module(step.module, indent)}){using}.tag({step.tag!r}{shared})"
    if isinstance(step, Split):
        group = f".tag_group({step.group!r})" if step.group else ""
        return f".split({_modules(step.branches, indent)}){using}{group}{_merge(step.merge)}"
    if isinstance(step, Loop):
        body = f".loop({_module(step.body, indent)})"
        if step.mode == "open":
            return body
        if step.mode == "for":
            return f"{body}.for_({step.count}){using}"
        return f"{body}.{step.mode}_({_halt(step.halt)}, {step.count}){using}".replace(
            "until_", "until"
        )
    if isinstance(step, Gate):
        return f".gate({_router(step.router)}, {_modules(step.experts, indent)}){using}"
    if isinstance(step, Switch):
        branches = _modules(step.branches, indent)
        return f".switch({_selector(step.selector)}, {branches}){using}"
    batched = ".batched()" if step.batched else ""
    body = f".map({_module(step.body, indent)}){batched}"
    if step.mode == "over":
        return f"{body}.over({step.tag!r})"
    return f"{body}.slices({step.n})" if step.mode == "slices" else f"{body}.each()"


def _chain(graph: GraphSpec, indent: str) -> str:
    head = f"Flow({_leaf(graph.entry)})"
    shapes = {"vector": ":[d]", "row": ":[1,d]"} if not indent else {}
    for aux in graph.inputs:
        per_sample = ", per_sample=True" if aux.per_sample else ""
        head += f".input({aux.name!r}{shapes.get(aux.shape, '')}{per_sample})"
    lines = [head, *(_step(s, indent) for s in graph.steps)]
    if indent:
        lines.append(f".label({graph.uid!r})" + (".build()" if graph.prebuilt else ""))
    return f"\n{indent}".join(lines)


def render(description: Description) -> str:
    """`description` as an indented builder chain, with its calls.

    Example:
        >>> from flowdl._fuzz.ir import CallSpec, Description, GraphSpec, Leaf, Tag, Through
        >>> g = GraphSpec("top", 2, Leaf("tanh", 5, 2, 2),
        ...               steps=(Through(Leaf("stateadd", 0, 2, 2, 1), ("h",)), Tag("h")))
        >>> print(render(Description(9, "state", g, (CallSpec(3), CallSpec(3, reset=True)))))
        seed 9 [state] dim 2, calls with batch 3, reset 3
        Flow(tanh#5)
        .through(stateadd#0/1).using('h')
        .tag('h')
    """
    calls = ", ".join(f"reset {c.batch}" if c.reset else str(c.batch) for c in description.calls)
    head = f"seed {description.seed} [{description.category}] dim {description.graph.dim}"
    invalid = f", invalid: {description.invalid}" if description.invalid else ""
    return f"{head}, calls with batch {calls}{invalid}\n{_chain(description.graph, '')}"

"""Static facts about one parsed CEL expression: free names, access paths, macros and cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from amosflow.dsl.expr._syntax import (
    MACROS,
    Call,
    Cond,
    Field,
    Ident,
    Index,
    ListLit,
    Lit,
    MapLit,
    Member,
    Method,
    NAry,
    Node,
    Unary,
)
from amosflow.errors import ExpressionError

# Comprehension nesting depth and cost exponent of a sub-expression.
Depth = tuple[int, int]
ACCUMULATING_MACROS: Final = frozenset({"map", "filter"})
# A path key is a map key (str) or a list index (int) taken from a literal.
PathKey = str | int
# A prune tree says which parts of a root value an expression can read: None means all of it.
PruneTree = dict[PathKey, "PruneTree | None"]


@dataclass(slots=True)
class Facts:
    """What the cost model, the activation builder and the validator need to know."""

    names: set[str] = field(default_factory=set)
    paths: dict[str, list[tuple[PathKey, ...]]] = field(default_factory=dict)
    operations: int = 0
    additions: int = 0
    comprehension_depth: int = 0
    cost_exponent: int = 0
    largest_literal: int = 0
    secret: str | None = None
    # map/filter nesting, and the free names a map's transform reads: each element it adds to
    # its result can hold those whole values, and the library copies its result on every step.
    accumulating_depth: int = 0
    accumulated_names: set[str] = field(default_factory=set)
    transform_nesting: int = 0

    def step_refs(self) -> set[str]:
        """Step ids read through `steps.ID` or `steps['ID']`."""
        return {str(path[0]) for path in self.paths.get("steps", ()) if path}

    def prune_trees(self) -> dict[str, PruneTree | None]:
        """Merge the access paths of each free name into one tree of the keys it can read."""
        trees: dict[str, PruneTree | None] = {}
        for name, paths in self.paths.items():
            tree: PruneTree | None = {}
            for path in sorted(paths, key=len):
                tree = _insert(tree, path)
            trees[name] = tree
        return trees


def _insert(tree: PruneTree | None, path: tuple[PathKey, ...]) -> PruneTree | None:
    if tree is None or not path:
        return None
    head, rest = path[0], path[1:]
    if head in tree and tree[head] is None:
        return tree
    tree[head] = _insert(tree.get(head, {}), rest)
    return tree


def analyse(node: Node) -> Facts:
    """Collect the static facts of an expression and enforce the `steps`/`secrets` forms."""
    facts = Facts()
    facts.comprehension_depth, facts.cost_exponent = _visit(node, frozenset(), facts)
    if "secrets" in facts.names:
        facts.secret = _plain_secret(node)
    for path in facts.paths.get("steps", ()):
        if not path or not isinstance(path[0], str):
            raise ExpressionError("`steps` must be followed by a step id: steps.ID or steps['ID']")
    return facts


def _plain_secret(node: Node) -> str:
    """Return the secret name when the whole expression is `secrets.a.b` or `secrets['a.b']`."""
    keys: list[str] = []
    if isinstance(node, Member) and isinstance(node.base, Ident) and node.base.name == "secrets":
        for accessor in node.accessors:
            if isinstance(accessor, Field):
                keys.append(accessor.name)
            elif (
                isinstance(accessor, Index)
                and isinstance(accessor.expr, Lit)
                and isinstance(accessor.expr.value, str)
                and accessor.expr.value
            ):
                keys.append(accessor.expr.value)
            else:
                keys = []
                break
    if not keys:
        raise ExpressionError(
            "a secret can only be referenced alone, as ${secrets.NAME} or "
            "${secrets['NAME']}; it cannot be combined with other expressions"
        )
    return ".".join(keys)


def _record_path(root: str, accessors: list[Field | Index | Method], facts: Facts) -> None:
    path: list[PathKey] = []
    for accessor in accessors:
        if isinstance(accessor, Field):
            path.append(accessor.name)
        elif (
            isinstance(accessor, Index)
            and isinstance(accessor.expr, Lit)
            and isinstance(accessor.expr.value, (str, int))
            and not isinstance(accessor.expr.value, bool)
        ):
            path.append(accessor.expr.value)
        else:
            break
    facts.paths.setdefault(root, []).append(tuple(path))


def _visit(node: Node, bound: frozenset[str], facts: Facts) -> Depth:
    """Walk a node, returning its comprehension nesting depth and cost exponent."""
    children: list[Node] = []
    match node:
        case Member():
            return _visit_member(node, bound, facts)
        case Ident(name=name) if name not in bound:
            _read_name(name, facts)
            facts.paths.setdefault(name, []).append(())
        case Lit(size=size):
            facts.largest_literal = max(facts.largest_literal, size)
        case Call(args=args):
            facts.operations += 1
            children = args
        case ListLit(items=items):
            facts.largest_literal = max(facts.largest_literal, len(items))
            children = items
        case MapLit(entries=entries):
            facts.largest_literal = max(facts.largest_literal, len(entries))
            children = [n for entry in entries for n in entry]
        case Unary(ops=ops, operand=operand):
            facts.operations += len(ops)
            children = [operand]
        case NAry(ops=ops, operands=operands):
            facts.operations += len(ops)
            facts.additions += ops.count("+")
            children = operands
        case Cond(cond=cond, then=then, other=other):
            facts.operations += 1
            children = [cond, then, other]
    return _visit_all(children, bound, facts)


def _read_name(name: str, facts: Facts) -> None:
    """Record a free name; inside a map's transform, also as copied into the result."""
    facts.names.add(name)
    if facts.transform_nesting:
        facts.accumulated_names.add(name)


def _visit_all(nodes: list[Node], bound: frozenset[str], facts: Facts) -> Depth:
    depths = [_visit(n, bound, facts) for n in nodes]
    return max((d for d, _ in depths), default=0), max((e for _, e in depths), default=0)


def _visit_member(node: Member, bound: frozenset[str], facts: Facts) -> Depth:
    base = node.base
    depth: Depth = (0, 0)
    if isinstance(base, Ident) and base.name not in bound:
        _read_name(base.name, facts)
        _record_path(base.name, node.accessors, facts)
    else:
        depth = _visit(base, bound, facts)
    for accessor in node.accessors:
        if isinstance(accessor, Index):
            facts.operations += 1
            depth = _deepest(depth, _visit(accessor.expr, bound, facts))
        elif isinstance(accessor, Method):
            facts.operations += 1
            variable = _macro_variable(accessor)
            if variable is None:
                depth = _deepest(depth, _visit_all(accessor.args, bound, facts))
            else:
                depth = _deepest(depth, _visit_macro(accessor, variable, bound, facts))
    return depth


def _visit_macro(method: Method, variable: str, bound: frozenset[str], facts: Facts) -> Depth:
    """Walk a comprehension's arguments; for map and filter, also how deep they accumulate."""
    inner_bound = bound | {variable}
    if method.name not in ACCUMULATING_MACROS:
        inner, exponent = _visit_all(method.args[1:], inner_bound, facts)
        return inner + 1, exponent + 1
    before = facts.accumulating_depth
    facts.accumulating_depth = 0
    inner, exponent = _visit_all(method.args[1:-1], inner_bound, facts)
    if method.name == "map":
        # What a map's transform reads ends up in every element of its result.
        facts.transform_nesting += 1
        inner, exponent = _deepest((inner, exponent), _visit(method.args[-1], inner_bound, facts))
        facts.transform_nesting -= 1
    else:
        inner, exponent = _deepest((inner, exponent), _visit(method.args[-1], inner_bound, facts))
    facts.accumulating_depth = max(before, facts.accumulating_depth + 1)
    # The library builds map/filter results by copying the accumulator on every element, so
    # those two macros are quadratic in the length of their input.
    return inner + 1, exponent + 2


def _deepest(a: Depth, b: Depth) -> Depth:
    return max(a[0], b[0]), max(a[1], b[1])


def _macro_variable(method: Method) -> str | None:
    """Return the bound variable of a comprehension macro call, or None for a plain method."""
    arity_ok = len(method.args) == 2 or (method.name == "map" and len(method.args) == 3)  # noqa: PLR2004
    first = method.args[0] if method.args else None
    if method.name in MACROS and arity_ok and isinstance(first, Ident):
        return first.name
    return None

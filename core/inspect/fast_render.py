"""Chat-template rendering for inspection: the same text as apply_chat_template, produced much faster.

Most chat templates copy each message's text into the output untouched. For those, the output of a
conversation depends on its shape alone (roles, which messages are empty, the generation prompt), so
the template is rendered once per shape with marker texts, and each row fills the markers in. Whether a
template qualifies is decided from its syntax tree (message text only concatenated into the output or
tested for emptiness) and checked by rendering with two different marker sets and one real row;
everything else (tools, tool calls, templates that trim, split or measure the text) is rendered by jinja.
"""

from __future__ import annotations

from typing import Any

from tunedeck.core.errors import DataError

Skeleton = tuple[tuple[str, ...], tuple[int, ...]]  # literal texts, and which message's text follows each


class ChatRenderer:
    """Callable(messages, tools, add_generation_prompt) -> text, equal to
    tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=...)."""

    def __init__(self, tokenizer: Any, chat_template: str | None = None):
        self.chat_template = chat_template or getattr(tokenizer, "chat_template", None)
        if not self.chat_template:
            raise DataError("the tokenizer has no chat template", where="--template",
                            hint="pass --template chatml, qwen or llama3 to match how the model was trained")
        self.tokenizer = tokenizer
        self.template = None
        self.skeletons: dict[tuple, Skeleton | None] = {}
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            self.template = _compile_jinja_template(self.chat_template)
            self.variables = dict(tokenizer.special_tokens_map)
            self.verbatim = copies_text_verbatim(self.template.environment, self.chat_template)
        except Exception:  # noqa: BLE001 - another transformers layout: use the public call
            self.template = None
            self.verbatim = False

    def __call__(self, messages: list[dict], tools: Any, generation_prompt: bool) -> str:
        if self.verbatim and tools is None and all(len(m) == 2 for m in messages):
            shape = (tuple((m["role"], m["content"] == "") for m in messages), generation_prompt)
            skeleton = self.skeletons.get(shape, ())
            if skeleton == ():
                skeleton = self._skeleton(shape, messages)
            if skeleton is not None:
                return fill(skeleton, messages)
        return self.jinja(messages, tools, generation_prompt)

    def jinja(self, messages: list[dict], tools: Any, generation_prompt: bool) -> str:
        if self.template is None:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation_prompt,
                                                      chat_template=self.chat_template)
        return self.template.render(messages=messages, tools=tools, documents=None,
                                    add_generation_prompt=generation_prompt, **self.variables)

    def _skeleton(self, shape: tuple, example: list[dict]) -> Skeleton | None:
        """Build and check the skeleton of one shape; None (render with jinja) when any check fails."""
        skeleton = None
        try:
            first = self._marked(shape, "zqxA", "\n \"\\ ")
            second = self._marked(shape, "vkjB", "  ")
            if first is not None and first == second and fill(first, example) == self.jinja(example, None, shape[1]):
                skeleton = first
        except Exception:  # noqa: BLE001 - a template that raises on this shape: jinja reports it per row
            skeleton = None
        self.skeletons[shape] = skeleton
        return skeleton

    def _marked(self, shape: tuple, tag: str, pad: str) -> Skeleton | None:
        roles, generation_prompt = shape
        markers = ["" if empty else f"{pad}{tag}{i}q{pad}" for i, (_, empty) in enumerate(roles)]
        text = self.jinja([{"role": role, "content": m} for (role, _), m in zip(roles, markers, strict=True)],
                          None, generation_prompt)
        found = []
        for index, marker in enumerate(markers):
            if marker:
                at = text.find(marker)
                if at < 0 or text.find(marker, at + 1) >= 0:
                    return None
                found.append((at, index))
        found.sort()
        literals, cursor = [], 0
        for at, index in found:
            literals.append(text[cursor:at])
            cursor = at + len(markers[index])
        literals.append(text[cursor:])
        if any(tag in literal for literal in literals):  # the text also went somewhere in another form
            return None
        return tuple(literals), tuple(index for _, index in found)


def fill(skeleton: Skeleton, messages: list[dict]) -> str:
    literals, order = skeleton
    parts = [literals[0]]
    for index, literal in zip(order, literals[1:], strict=True):
        parts.append(messages[index]["content"])
        parts.append(literal)
    return "".join(parts)


def copies_text_verbatim(environment: Any, source: str) -> bool:
    """True when every read of a message's `content` in the template either goes into the output unchanged
    (alone or concatenated) or is only tested for emptiness / being a string."""
    from jinja2 import nodes

    reads = []

    def walk(node: Any, parents: tuple) -> None:
        is_read = (isinstance(node, nodes.Getattr) and node.attr == "content") or (
            isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and node.arg.value == "content")
        if is_read:
            reads.append((node, parents))
        for child in node.iter_child_nodes():
            walk(child, (*parents, node))

    walk(environment.parse(source), ())
    return all(_harmless(node, parents) for node, parents in reads)


def _harmless(node: Any, parents: tuple) -> bool:
    from jinja2 import nodes

    chain = list(parents)
    child = node
    while chain and isinstance(chain[-1], nodes.Add | nodes.Concat) or (
            chain and isinstance(chain[-1], nodes.CondExpr) and chain[-1].test is not child):
        child = chain.pop()
    if chain and isinstance(chain[-1], nodes.Output):
        return True
    if child is not node:
        return False
    while chain and isinstance(chain[-1], nodes.Not | nodes.And | nodes.Or):  # truthiness only
        child = chain.pop()
    parent = chain[-1] if chain else None
    if isinstance(parent, nodes.If | nodes.CondExpr) and parent.test is child:
        return True
    return isinstance(parent, nodes.Test) and parent.node is child and parent.name in ("string", "defined",
                                                                                         "undefined", "none")

from promptflow.core import tool


@tool
def consume(first, second, dotted, plain, whole, deep, alias) -> dict:
    return {
        "first": first,
        "second": second,
        "dotted": dotted,
        "plain": plain,
        "whole_keys": sorted(whole),
        "deep": deep,
        "alias": alias,
    }

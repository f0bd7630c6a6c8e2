"""The GGUF quantization types tunedeck offers, by llama.cpp name; plain data, importable anywhere."""

from __future__ import annotations

import difflib

# name -> (llama_ftype value in llama.h, what it is for). Types that need an importance matrix
# (IQ1_*, IQ2_*, IQ3_XXS, Q2_K_S) are left out: without one they produce unusable models.
QUANT_TYPES: dict[str, tuple[int, str]] = {
    "Q2_K": (10, "2.96 bits/weight: smallest, large quality loss"),
    "Q3_K_S": (11, "3.41 bits/weight: very small, high quality loss"),
    "Q3_K_M": (12, "3.74 bits/weight: very small, substantial quality loss"),
    "Q3_K_L": (13, "4.03 bits/weight: small, substantial quality loss"),
    "IQ4_XS": (30, "4.25 bits/weight: non-linear 4-bit, small"),
    "IQ4_NL": (25, "4.50 bits/weight: non-linear 4-bit"),
    "Q4_0": (2, "4.34 bits/weight: legacy 4-bit, fast on some CPUs"),
    "Q4_1": (3, "4.78 bits/weight: legacy 4-bit"),
    "Q4_K_S": (14, "4.37 bits/weight: small, some quality loss"),
    "Q4_K_M": (15, "4.58 bits/weight: the usual choice, balanced quality"),
    "Q5_0": (8, "5.21 bits/weight: legacy 5-bit"),
    "Q5_1": (9, "5.65 bits/weight: legacy 5-bit"),
    "Q5_K_S": (16, "5.21 bits/weight: low quality loss"),
    "Q5_K_M": (17, "5.33 bits/weight: very low quality loss"),
    "Q6_K": (18, "6.56 bits/weight: near-lossless"),
    "Q8_0": (7, "8.50 bits/weight: practically lossless, large"),
    "F16": (1, "16-bit float copy of the converted model"),
    "BF16": (32, "bfloat16 copy of the converted model"),
}


def normalize_quant_types(names: list[str]) -> list[str]:
    """Upper-cased, de-duplicated names, refusing unknown ones with a suggestion."""
    out: list[str] = []
    for raw in names:
        name = raw.strip().upper()
        if not name:
            continue
        if name not in QUANT_TYPES:
            close = difflib.get_close_matches(name, QUANT_TYPES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(QUANT_TYPES)}"
            raise ValueError(f"unknown quantization type {raw!r}{hint}")
        if name not in out:
            out.append(name)
    return out

"""Extraction speed: our pypdfium2 PDF path vs pypdf on the same files, same run; isolation cost.

Run: .venv/bin/python bench/extract_docs.py [--docs ../shared/evaldata/docs]
Prints a markdown table and writes bench/results/extract_docs.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import pypdf

from app.settings import apply_offline_env
from ingest.extract import ExtractConfig, extract, extract_isolated
from ingest.pdf import extract_pdf

REPO = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u4e00-\u9fff]")
PDFS = ("pdf/DA-619p.pdf", "pdf/docling-redp5110_sampled.pdf", "pdf/zh-pdfjs-XiaoBiaoSong.pdf",
        "pdf/zh-pdfjs-issue3521.pdf")


def _timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _pypdf_pages(path: Path) -> list[str]:
    return [page.extract_text() or "" for page in pypdf.PdfReader(path).pages]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=Path, default=REPO.parent / "shared/evaldata/docs")
    args = parser.parse_args()
    apply_offline_env()  # a script's own start-up, like the worker's
    rows = []
    for relative in PDFS:
        path = args.docs / relative
        elements, ours_s = _timed(lambda: extract_pdf(path))
        pages, pypdf_s = _timed(lambda: _pypdf_pages(path))
        num_pages = max(element.page for element in elements)
        rows.append({
            "file": relative, "pages": num_pages,
            "ours_ms_per_page": 1000 * ours_s / num_pages,
            "pypdf_ms_per_page": 1000 * pypdf_s / num_pages,
            "speedup": pypdf_s / ours_s,
            "ours_cjk_chars": len(CJK.findall("".join(e.text for e in elements))),
            "pypdf_cjk_chars": len(CJK.findall("".join(pages))),
        })
    config = ExtractConfig()
    docx = args.docs / "docx/handbook-1p.docx"
    _, cold_s = _timed(lambda: extract(docx, config=config))  # includes importing unstructured
    _, in_process_s = _timed(lambda: extract(docx, config=config))
    _, isolated_s = _timed(lambda: extract_isolated(docx, config=config, timeout_s=120,
                                                    max_memory_bytes=3 * 2**30))
    _, isolated_pdf_s = _timed(lambda: extract_isolated(args.docs / PDFS[0], config=config,
                                                        timeout_s=120, max_memory_bytes=3 * 2**30))
    print("| file | pages | ours ms/page | pypdf ms/page | speed-up | CJK chars ours / pypdf |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['file']} | {row['pages']} | {row['ours_ms_per_page']:.2f} | "
              f"{row['pypdf_ms_per_page']:.2f} | {row['speedup']:.1f}x | "
              f"{row['ours_cjk_chars']} / {row['pypdf_cjk_chars']} |")
    print(f"\nhandbook-1p.docx: in process cold {cold_s:.2f} s / warm {in_process_s:.3f} s, isolated child "
          f"(spawn + unstructured import) {isolated_s:.2f} s; DA-619p.pdf isolated {isolated_pdf_s:.2f} s")
    results = {"pdf": rows, "docx_in_process_cold_s": cold_s, "docx_in_process_s": in_process_s, "docx_isolated_s": isolated_s,
               "pdf_619p_isolated_s": isolated_pdf_s}
    out = REPO / "bench/results/extract_docs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

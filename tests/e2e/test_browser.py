"""A person in a browser: log in, upload files, wait for them to be indexed, ask, read a cited answer.
Real headless Chromium (Debian's) driven by Playwright, against the stack `zhiku up` started."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "screenshots"


@pytest.fixture(scope="module")
def page():  # noqa: ANN201
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        yield context.new_page()
        browser.close()


def test_upload_then_ask_in_the_browser(page, stack, evaldata: Path) -> None:  # noqa: ANN001
    client = stack.client()
    client.post("/api/kbs", json={"name": "浏览器测试"}).raise_for_status()

    page.goto(stack.ui_url)
    page.get_by_label("用户名 Username").fill(stack.admin_username)
    page.get_by_label("密码 Password").fill(stack.admin_password)
    page.get_by_role("button", name="登录 Log in").click()
    page.get_by_role("link", name="文档 Documents").click()
    # The sample knowledge base may come first; upload into (and watch) the test's own one.
    page.locator("[data-testid=stSelectbox]").click()
    page.get_by_role("option", name="浏览器测试").click()

    files = [evaldata / "docs/md/zh-chatchat-distributed-training.md", evaldata / "docs/docx/handbook-1p.docx"]
    page.locator("input[type=file]").set_input_files([str(f) for f in files])
    page.get_by_role("button", name="上传 2 个文件 Upload").click()
    for name in ("zh-chatchat-distributed-training.md", "handbook-1p.docx"):
        page.get_by_text(name).first.wait_for(timeout=60_000)
    page.get_by_text("✅ 已索引 indexed").nth(1).wait_for(timeout=600_000)

    page.get_by_role("link", name="提问 Ask").click()
    page.get_by_placeholder("输入问题… Ask a question about your documents").fill("FSDP算法是由哪项技术驱动的？")
    page.keyboard.press("Enter")
    citation = page.get_by_text("[1] zh-chatchat-distributed-training.md")
    citation.first.wait_for(timeout=600_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "ask.png"), full_page=True)
    answer = page.locator("[data-testid=stChatMessage]").last.inner_text()
    assert "ZeroRedundancyOptimizer" in answer or "DeepSpeed" in answer

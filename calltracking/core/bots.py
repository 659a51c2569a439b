"""Crawlers and headless browsers by user agent: they never get a dynamic number.

Rules (CONTRACT.md, "Visitor websocket"): a missing or blank user agent is a crawler (every real
browser sends one); so is any agent naming a known robot, a headless or automated browser, a page
auditor, an HTTP library or a link-preview fetcher, and any agent with the generic words bot,
spider or crawl in it. The generic words err on the side of "crawler": a human misread as a robot
sees the site's own number and is merely untracked, while a robot misread as a human holds a
number from the pool. Known false friends stay humans: Cubot phones, Yandex's own browser and app.
This is the user-agent half; behaviour (no activity, no visibility) is judged elsewhere.
"""

from __future__ import annotations

import functools
import re

_CRAWLER = re.compile(
    "|".join(
        (
            # Generic words; "cubot" is a phone brand, not a robot.
            r"(?<!cu)bot",
            r"spider",
            r"crawl",
            r"slurp",
            # Yandex robots that do not say "bot" (YandexMetrika, YandexImages, ...) name the
            # robots' page; Yandex's browser (YaBrowser) and app (YandexSearch) do not.
            r"yandex\.com/bots",
            r"yandex(?:metrika|images|webmaster|direct|market|news|pagechecker|favicons|video)",
            r"facebookexternalhit",
            r"facebookcatalog",
            r"mediapartners-google",
            r"apis-google",
            r"google-inspectiontool",
            r"googleother",
            r"feedfetcher",
            r"headless",
            r"phantomjs",
            r"lighthouse",
            r"pagespeed",
            r"puppeteer",
            r"selenium",
            r"webdriver",
            r"python-requests",
            r"python-httpx",
            r"python-urllib",
            r"aiohttp",
            r"scrapy",
            r"\bcurl/",
            r"\bwget/",
            r"go-http-client",
            r"\bjava/",
            r"okhttp",
            r"apache-httpclient",
            r"node-fetch",
            r"\baxios/",
            r"libwww-perl",
            r"whatsapp/",
            r"skypeuripreview",
            r"vkshare",
        )
    )
)


@functools.lru_cache(maxsize=4096)  # a site's visitors share a few hundred user agents
def is_crawler(user_agent: str | None) -> bool:
    """Whether this user agent belongs to a robot rather than a person's browser."""
    if user_agent is None or not user_agent.strip():
        return True
    return _CRAWLER.search(user_agent.lower()) is not None

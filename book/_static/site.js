/*
 * The theme, fixed for phones, keyboards and screen readers.
 *
 * Sidebar toggles: pydata-sphinx-theme 0.17.1 and sphinx-book-theme 1.3.0 each wire only the
 * FIRST `.primary-toggle` (and `.secondary-toggle`) of the page, a navbar button that the book
 * theme hides. The buttons a reader sees, in the article header, had no handler, so the menu
 * could not be opened on a phone. Their clicks are forwarded to the wired button, which opens
 * the navigation as a dialog below 992 px and hides or shows the sidebar from 992 px up.
 *
 * Search summaries: Sphinx builds each result's summary from the page's HTML, where formulas are
 * still TeX source (MathJax typesets them in the browser). Formulas are turned into plain text.
 */
(function () {
  "use strict";

  function ready(callback) {
    if (document.readyState !== "loading") callback();
    else document.addEventListener("DOMContentLoaded", callback);
  }

  ready(function () {
    ["primary-toggle", "secondary-toggle"].forEach(function (name) {
      var buttons = document.querySelectorAll("button." + name);
      var wired = buttons[0];
      Array.prototype.slice.call(buttons, 1).forEach(function (button) {
        button.addEventListener("click", function (event) {
          event.preventDefault();
          event.stopPropagation();
          wired.click();
        });
      });
    });
  });

  // Accessible names that say what the reader sees (WCAG 2.5.3, axe's label-content-name-mismatch
  // and summary-name): the search buttons read "Search Ctrl+K", the colour-mode button names the
  // mode it shows, and the arrow that opens a part of the navigation says which part.
  ready(function () {
    document.querySelectorAll("button.search-button-field").forEach(function (button) {
      button.removeAttribute("aria-label");
    });
    // The colour-mode icons: Font Awesome replaces each <i title="Light"> by an <svg> holding a <title>
    // (when it gets to it: before or after this script, a race), which gave the button the content
    // "Light Dark System Settings" against its name "Color mode". The icons are made silent now and
    // again whenever Font Awesome swaps them.
    function silenceIcons(button) {
      button.querySelectorAll(".theme-switch").forEach(function (icon) {
        if (icon.hasAttribute("title")) {
          icon.setAttribute("data-p2l-title", icon.getAttribute("title"));
          icon.removeAttribute("title");
        }
        icon.querySelectorAll("title").forEach(function (title) {
          icon.setAttribute("data-p2l-title", title.textContent);
          title.remove();
        });
        icon.removeAttribute("aria-labelledby");
        icon.setAttribute("aria-hidden", "true");
      });
    }
    document.querySelectorAll("button.theme-switch-button").forEach(function (button) {
      silenceIcons(button);
      new MutationObserver(function () { silenceIcons(button); })
        .observe(button, { childList: true, subtree: true, attributes: true, attributeFilter: ["title", "aria-labelledby"] });
    });
    document.querySelectorAll("nav details > summary").forEach(function (summary) {
      if (summary.textContent.trim() || summary.getAttribute("aria-label")) return;
      var link = summary.parentElement.parentElement.querySelector(":scope > a, :scope > p, :scope > span");
      var name = link ? link.textContent.trim() : "this part";
      summary.setAttribute("aria-label", "Show or hide the pages of " + name);
    });
  });

  var TEX_WORDS = {
    mathbb: "", mathrm: "", mathbf: "", text: "", operatorname: "", mathcal: "", boldsymbol: "",
    times: "×", cdot: "·", le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈",
    in: "∈", sum: "Σ", prod: "Π", infty: "∞", to: "→", mid: "|", log: "log", exp: "exp",
    sigma: "σ", mu: "μ", theta: "θ", eta: "η", pi: "π", alpha: "α", beta: "β", lambda: "λ",
    partial: "∂", nabla: "∇", frac: "", left: "", right: "", quad: " ", qquad: " ",
  };

  /** A formula's TeX as plain text: `\(W \in \mathbb{R}^{27 \times 27}\)` → `W ∈ R^27 × 27`. */
  function texToText(tex) {
    return tex
      .replace(/^\s*(\\\(|\\\[|\$\$?)|(\\\)|\\\]|\$\$?)\s*$/g, "")
      .replace(/\\begin\{[^}]*\}|\\end\{[^}]*\}/g, "")
      .replace(/\\([A-Za-z]+)/g, function (match, word) {
        return Object.prototype.hasOwnProperty.call(TEX_WORDS, word) ? TEX_WORDS[word] : word;
      })
      .replace(/\\[,;:! ]|&|\\\\/g, " ")
      .replace(/[{}]/g, "")
      .replace(/\s+/g, " ")
      .trim();
  }

  // The page chrome inside the theme's [role=main] (the article header's buttons: ".pdf", the contents
  // list, "Contents"; the previous/next links) is not part of a result's summary.
  var CHROME = [
    ".bd-header-article", ".header-article-items", ".article-header-buttons", ".bd-sidebar-secondary",
    ".prev-next-area", ".prev-next-footer", ".bd-footer-article", ".bd-footer-content", ".dropdown",
    "button", ".toggle-details", "nav", ".p2l-figure", ".onlyprint", "#jb-print-docs-body",
  ].join(", ");

  function plainFormulas(htmlString) {
    var parsed = new DOMParser().parseFromString(htmlString, "text/html");
    parsed.querySelectorAll(CHROME).forEach(function (node) { node.remove(); });
    parsed.querySelectorAll(".math").forEach(function (formula) {
      formula.textContent = texToText(formula.textContent);
    });
    return parsed.documentElement.outerHTML;
  }

  // searchtools.js (search page only) loads after this file and declares `Search` with const.
  ready(function () {
    if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
    var htmlToText = Search.htmlToText;
    Search.htmlToText = function (htmlString, anchor) {
      return htmlToText(plainFormulas(htmlString), anchor);
    };
  });

  // Downloads from the site's folder (file://): Chromium and Firefox show an .ipynb as text (the
  // `download` attribute does not hold for file: links), so a notebook's link points at the .zip
  // that the build writes beside it (book/_ext/launch_links.py), which browsers save.
  ready(function () {
    if (window.location.protocol !== "file:") return;
    document.querySelectorAll('a[href$=".ipynb"]').forEach(function (link) {
      var href = link.getAttribute("href");
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) return;  // the site's own files only, not a launch service
      link.setAttribute("href", href.replace(/\.ipynb$/, ".zip"));
      link.setAttribute("download", "");
      var label = link.querySelector(".btn__text-container");
      if (label && label.textContent.trim() === ".ipynb") label.textContent = ".ipynb (zip)";
    });
  });

  // Search results: one entry per page and section (Sphinx lists a page whose title matches both as the
  // page and as its first section, "Binary cross-entropy" twice), and each link carries the words
  // searched for, so that the opened page highlights them (sphinx_highlight.js reads ?highlight=).
  ready(function () {
    var results = document.getElementById("search-results");
    if (!results) return;
    var words = (new URLSearchParams(window.location.search).get("q") || "").trim();
    function tidy() {
      var seen = {};
      results.querySelectorAll("ul.search > li").forEach(function (item) {
        var link = item.querySelector("a");
        if (!link) return;
        var page = (link.getAttribute("href") || "").split("#")[0].split("?")[0];
        var title = link.textContent.replace(/^[\d.]+\s+/, "").trim().toLowerCase();
        var key = page + "|" + title;
        if (seen[key] && seen[key] !== item) { item.remove(); return; }
        seen[key] = item;
        if (words && !/[?&]highlight=/.test(link.getAttribute("href"))) {
          var href = link.getAttribute("href"), hash = href.indexOf("#");
          var base = hash < 0 ? href : href.slice(0, hash), anchor = hash < 0 ? "" : href.slice(hash);
          link.setAttribute("href", base + (base.indexOf("?") < 0 ? "?" : "&") + "highlight=" + encodeURIComponent(words) + anchor);
        }
      });
    }
    new MutationObserver(tidy).observe(results, { childList: true, subtree: true });
    tidy();
  });

  // The opened result: sphinx_highlight.js marks the searched words only where `Search` is undefined, but
  // the theme loads searchtools.js on every page, so it never did. Here it is asked to, off the search page.
  ready(function () {
    if (document.getElementById("search-results") || typeof SphinxHighlight === "undefined") return;
    if (!document.querySelector("span.highlighted")) SphinxHighlight.highlightSearchWords();
  });

  window.p2lTexToText = texToText;
})();

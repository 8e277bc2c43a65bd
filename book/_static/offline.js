/*
 * Opened straight from the folder (file://), the browser refuses the page fetches that Sphinx's
 * search uses to show a summary under each result: list the results without summaries instead
 * of failing those requests. Served over http(s), nothing changes.
 */
(function () {
  "use strict";
  if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
    DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
  }
})();

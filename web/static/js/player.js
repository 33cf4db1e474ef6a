/* The stream: an HLS (.m3u8) source plays natively where the browser can (Safari, iOS, Chrome on Android)
 * and through the vendored hls.js elsewhere; any other URL is given to the <video> element as is.
 * hls.js is the heaviest file of the page, so it is fetched only when it is needed: a <script> added here
 * when the browser has no native HLS but has MediaSource. Its URL comes from the video's data-hls-script
 * (the template's static(), so it is served and cached like every other static file). */
(function () {
  "use strict";

  var video = document.querySelector(".player-video[data-src]");
  if (!video) return;
  var src = video.getAttribute("data-src");
  var isHls = /\.m3u8(\?|#|$)/i.test(src);
  var script = video.getAttribute("data-hls-script");

  function direct() {
    video.src = src; // let the browser try: it shows its own error if it cannot
  }

  function mediaSource() {
    return !!(window.MediaSource || window.ManagedMediaSource || window.WebKitMediaSource);
  }

  function play() {
    if (!window.Hls || !window.Hls.isSupported()) {
      direct();
      return;
    }
    // No worker: the page's CSP allows scripts from this site only.
    var hls = new window.Hls({ enableWorker: false, lowLatencyMode: true, liveSyncDurationCount: 3 });
    hls.loadSource(src);
    hls.attachMedia(video);
    hls.on(window.Hls.Events.ERROR, function (_evt, data) {
      if (!data || !data.fatal) return;
      if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
        setTimeout(function () { hls.startLoad(); }, 3000); // the stream may not have started yet
      } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      }
    });
  }

  if (!isHls || video.canPlayType("application/vnd.apple.mpegurl")) {
    direct();
    return;
  }
  if (window.Hls) {
    play();
    return;
  }
  if (!script || !mediaSource()) {
    direct();
    return;
  }
  var tag = document.createElement("script");
  tag.src = script;
  tag.async = true;
  tag.onload = play;
  tag.onerror = direct; // hls.js could not be fetched: the browser tries, and says so if it cannot
  document.head.appendChild(tag);
})();

/* The stream: an HLS (.m3u8) source plays natively where the browser can (Safari, iOS) and through
 * the vendored hls.js elsewhere; any other URL is given to the <video> element as is. */
(function () {
  "use strict";

  var video = document.querySelector(".player-video[data-src]");
  if (!video) return;
  var src = video.getAttribute("data-src");
  var isHls = /\.m3u8(\?|#|$)/i.test(src);

  if (!isHls || video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    return;
  }
  if (window.Hls && window.Hls.isSupported()) {
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
  } else {
    video.src = src; // let the browser try
  }
})();

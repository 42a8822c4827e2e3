// The demo page: each uploader is built from the gateway's GET <route>/config (bucket URL,
// signing endpoints, this user's key prefix, limits), the file list is fetched again from the
// app whenever an upload has been completed or deleted, and its Delete buttons go through the
// gateway's delete path, which tells the app.
(function () {
  "use strict";
  var MULTIPART_ABOVE = 20 * 1024 * 1024;
  var UNITS = ["KiB", "MiB", "GiB", "TiB"];
  var COMPANION_PREFIX = "Companion request failed: ";

  // The page's one unit system, as the file list's (human_size in gateway/demo/pages.py).
  function humanSize(bytes) {
    if (bytes < 1024) { return bytes + (bytes === 1 ? " byte" : " bytes"); }
    var value = bytes / 1024, unit = 0;
    while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit += 1; }
    var text = value.toFixed(1);
    return (text.slice(-2) === ".0" ? text.slice(0, -2) : text) + " " + UNITS[unit];
  }

  function refreshFiles() {
    return fetch("/files/rows", {credentials: "same-origin"})
      .then(function (answer) {
        if (!answer.ok) { throw new Error("the file list answered " + answer.status); }
        return answer.text();
      })
      .then(function (rows) { document.getElementById("files").innerHTML = rows; });
  }

  function routeConfig(route) {
    return fetch(route + "/config", {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (answer) {
        if (!answer.ok) { throw new Error(route + "/config answered " + answer.status); }
        return answer.json();
      });
  }

  // A problem+json answer's sentence (detail), else its status.
  function problemText(answer) {
    return answer.json().then(
      function (problem) { return problem.detail || problem.error || "answered " + answer.status; },
      function () { return "answered " + answer.status; }
    );
  }

  // ------------------------------------------------------------------ the file list's Delete

  function filesStatus(text, failed) {
    var status = document.getElementById("files-status");
    status.textContent = text;
    status.className = failed ? "note failed" : "note";
  }

  document.getElementById("files").addEventListener("click", function (event) {
    var button = event.target.closest("button.delete");
    if (!button) { return; }
    var name = button.getAttribute("data-name");
    var key = button.getAttribute("data-key");
    if (!window.confirm("Delete " + name + "? The stored file is removed, and the app is told.")) {
      return;
    }
    button.disabled = true;
    fetch(button.getAttribute("data-url"), {method: "DELETE", credentials: "same-origin"})
      .then(function (answer) {
        if (answer.ok) {
          Object.keys(window.uploaders).forEach(function (route) {
            var forget = window.uploaders[route].forgetKey;
            if (forget) { forget(key); }
          });
          filesStatus("Deleted " + name + ".");
          return refreshFiles();
        }
        return problemText(answer).then(function (text) { throw new Error(text); });
      })
      .catch(function (error) {
        button.disabled = false;
        filesStatus(name + " was not deleted: " + error.message, true);
      });
  });

  // ------------------------------------------------------------------ Fine Uploader

  // Fine Uploader 5.16 passes on only the `error` of a signature answer (request-signer.js), so
  // the gateway's `preventRetry` would be lost there: the page reads the answers itself. Its
  // listener is added before Fine Uploader sets onreadystatechange, so it runs first.
  var finalRefusals = {};  // sentence -> true
  var signatureUrls = [];
  function watchSignatureAnswers(endpoint) {
    signatureUrls.push(new URL(endpoint, location.href).href);
    if (signatureUrls.length > 1) { return; }
    var create = qq.createXhrInstance;
    qq.createXhrInstance = function () {
      var xhr = create.apply(this, arguments);
      xhr.addEventListener("readystatechange", function () {
        if (xhr.readyState !== 4 || xhr.status < 400) { return; }
        var url = xhr.responseURL.split("?")[0];
        if (signatureUrls.indexOf(url) < 0) { return; }
        try {
          var answer = JSON.parse(xhr.responseText);
          if (answer.preventRetry === true && typeof answer.error === "string") {
            finalRefusals[answer.error] = true;
          }
        } catch (ignored) { /* not JSON: nothing to learn */ }
      });
      return xhr;
    };
  }

  function fineUploader(section, cfg) {
    var placeholders = "/static/fine-uploader/placeholders/";
    var message = section.querySelector(".message");
    var finalIds = {};
    var uploader;
    watchSignatureAnswers(cfg.signature.endpoint);

    function say(text) {
      message.textContent = text;
      message.hidden = !text;
    }

    function withoutRetry(id) {
      var item = uploader.getItemByFileId(id);
      item.classList.remove("qq-upload-retryable");
      item.querySelector(".qq-upload-retry-selector").classList.add("qq-hide");
    }

    uploader = new qq.s3.FineUploader({
      element: section.querySelector(".fine-uploader"),
      template: "qq-template",
      request: {
        endpoint: cfg.request.endpoint,
        accessKey: cfg.request.accessKey,
        clockDrift: cfg.serverTime - Date.now()
      },
      objectProperties: {
        // bucket and host: the bucket URL is not an AWS host name, so Fine Uploader must be told.
        bucket: cfg.objectProperties.bucket,
        host: cfg.objectProperties.host,
        region: cfg.objectProperties.region,
        acl: cfg.objectProperties.acl,
        // The gateway signs only keys under this user's prefix.
        key: function (id) {
          var ext = qq.getExtension(this.getName(id));
          return cfg.keyPrefix + this.getUuid(id) + (ext ? "." + ext.toLowerCase() : "");
        }
      },
      signature: cfg.signature,
      uploadSuccess: cfg.uploadSuccess,
      deleteFile: {
        enabled: cfg.deleteFile.enabled,
        endpoint: cfg.deleteFile.endpoint,
        forceConfirm: true,
        confirmMessage: "Delete {filename}? The stored file is removed, and the app is told."
      },
      iframeSupport: cfg.iframeSupport,
      chunking: cfg.chunking,
      validation: cfg.validation,
      // The gateway's answers carry preventRetry (Fine Uploader's default property name).
      retry: {preventRetryResponseProperty: "preventRetry"},
      failedUploadTextDisplay: {mode: "custom", responseProperty: "error"},
      text: {formatProgress: "{percent}% of {total_size}", failUpload: "Upload failed",
             waitingForResponse: "Storing…"},
      messages: {
        sizeError: "{file} is larger than {sizeLimit}, the largest file this route accepts.",
        emptyError: "{file} is empty."
      },
      // In the card, not in an alert box.
      showMessage: function (text) { say(text); },
      thumbnails: {
        placeholders: {
          waitingPath: placeholders + "waiting-generic.png",
          notAvailablePath: placeholders + "not_available-generic.png"
        }
      },
      callbacks: {
        onSubmit: function () { say(""); },
        onError: function (id, name, reason) {
          if (id !== null && finalRefusals[reason]) { finalIds[id] = true; }
        },
        onComplete: function (id, name, response) {
          if (response && response.success) { refreshFiles(); return; }
          if (finalIds[id]) { withoutRetry(id); }
        },
        onManualRetry: function (id) { return !finalIds[id]; },
        onDeleteComplete: function (id, xhr, isError) { if (!isError) { refreshFiles(); } }
      }
    });
    // 5.16 divides by 1000 whatever text.sizeSymbols say: its tiles and size messages use the
    // page's units instead.
    uploader._formatSize = humanSize;
    // Deleted from the list: its tile says so and offers no second delete.
    uploader.forgetKey = function (key) {
      uploader.getUploads({status: qq.status.UPLOAD_SUCCESSFUL}).forEach(function (upload) {
        if (uploader.getKey(upload.id) !== key) { return; }
        var item = uploader.getItemByFileId(upload.id);
        item.querySelector(".qq-upload-status-text-selector").textContent = "Deleted";
        item.querySelector(".qq-upload-delete-selector").classList.add("qq-hide");
      });
    };
    return uploader;
  }

  // ------------------------------------------------------------------ Uppy

  // @uppy/aws-s3 says "Companion request failed: <status text>"; the gateway puts the refusal's
  // sentence in the status text, which is all the user needs to read.
  function uppyError(error) {
    var text = String(error && error.message || error);
    if (text.indexOf(COMPANION_PREFIX) === 0) {
      text = text.slice(COMPANION_PREFIX.length) || "the gateway refused it";
    }
    return text;
  }

  function uppy(section, cfg) {
    var list = section.querySelector(".progress");
    var input = section.querySelector("input[type=file]");
    var lines = {};
    var instance = new Uppy({
      restrictions: cfg.restrictions,
      autoProceed: false,
      locale: {strings: {
        exceedsSize: "%{file} is larger than " + humanSize(cfg.maxSize) +
          ", the largest file this route accepts.",
        youCanOnlyUploadFileTypes: "This route accepts only %{types}."
      }}
    });
    instance.use(AwsS3, {
      companionEndpoint: cfg.companionEndpoint,
      shouldUseMultipart: function (file) { return file.size > MULTIPART_ABOVE; },
      getChunkSize: function () { return cfg.minPartSize; }
    });

    function show(file, text, state) {
      var line = lines[file.id];
      if (!line) {
        line = lines[file.id] = document.createElement("li");
        list.appendChild(line);
      }
      line.className = state || "";
      var size = file.size === null || file.size === undefined ? "" : " (" + humanSize(file.size) + ")";
      line.textContent = file.name + size + ": " + text;
    }

    function stored(file) {
      show(file, "stored", "done");
      instance.removeFile(file.id);
      refreshFiles();
    }

    function failed(file, text) {
      show(file, text, "failed");
      if (instance.getFile(file.id)) { instance.removeFile(file.id); }
    }

    instance.on("upload-progress", function (file, progress) {
      if (progress.bytesTotal) {
        show(file, Math.round(100 * progress.bytesUploaded / progress.bytesTotal) + "%");
      }
    });
    instance.on("upload-success", function (file, response) {
      if (file.size > MULTIPART_ABOVE) {
        stored(file);  // the gateway completed it when the multipart upload completed
        return;
      }
      // A single form POST: S3 tells nobody, so the page asks the gateway to complete it.
      fetch(cfg.completeEndpoint, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({key: response.body.key})
      }).then(function (answer) {
        if (answer.ok) { stored(file); return; }
        return problemText(answer).then(function (text) { failed(file, text); });
      }).catch(function (error) { failed(file, String(error)); });
    });
    instance.on("upload-error", function (file, error) { failed(file, uppyError(error)); });
    instance.on("restriction-failed", function (file, error) {
      if (file) { show(file, error.message || String(error), "failed"); }
    });
    input.addEventListener("change", function () {
      Array.prototype.forEach.call(input.files, function (f) {
        try {
          instance.addFile({name: f.name, type: f.type, data: f, source: "demo"});
        } catch (error) {
          // Uppy has already emitted restriction-failed.
        }
      });
      input.value = "";
      instance.upload();
    });
    return instance;
  }

  var builders = {fineuploader: fineUploader, uppy: uppy};
  window.uploaders = {};
  Array.prototype.forEach.call(document.querySelectorAll("[data-protocol]"), function (section) {
    var route = section.getAttribute("data-route");
    routeConfig(route)
      .then(function (cfg) {
        window.uploaders[route] = builders[section.getAttribute("data-protocol")](section, cfg);
        section.classList.add("ready");
      })
      .catch(function (error) {
        var note = document.createElement("p");
        note.className = "error";
        note.textContent = String(error);
        section.appendChild(note);
      });
  });
})();

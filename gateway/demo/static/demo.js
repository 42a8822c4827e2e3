// The demo page: each uploader is built from the gateway's GET <route>/config (bucket URL,
// signing endpoints, this user's key prefix), and the file list is fetched again from the app
// whenever an upload has been completed or deleted.
(function () {
  "use strict";
  var MULTIPART_ABOVE = 20 * 1024 * 1024;

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

  function fineUploader(section, cfg) {
    var placeholders = "/static/fine-uploader/placeholders/";
    return new qq.s3.FineUploader({
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
      deleteFile: cfg.deleteFile,
      iframeSupport: cfg.iframeSupport,
      chunking: cfg.chunking,
      validation: cfg.validation,
      thumbnails: {
        placeholders: {
          waitingPath: placeholders + "waiting-generic.png",
          notAvailablePath: placeholders + "not_available-generic.png"
        }
      },
      callbacks: {
        onComplete: function (id, name, response) {
          if (response && response.success) { refreshFiles(); }
        },
        onDeleteComplete: function () { refreshFiles(); }
      }
    });
  }

  function uppy(section, cfg) {
    var list = section.querySelector(".progress");
    var input = section.querySelector("input[type=file]");
    var lines = {};
    var instance = new Uppy({restrictions: cfg.restrictions, autoProceed: false});
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
      line.textContent = file.name + ": " + text;
    }

    function stored(file) {
      show(file, "stored", "done");
      instance.removeFile(file.id);
      refreshFiles();
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
        return answer.json().then(function (body) {
          if (answer.ok) { stored(file); return; }
          show(file, body.detail || body.error || "refused (" + answer.status + ")", "failed");
        });
      }).catch(function (error) { show(file, String(error), "failed"); });
    });
    instance.on("upload-error", function (file, error) { show(file, String(error), "failed"); });
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

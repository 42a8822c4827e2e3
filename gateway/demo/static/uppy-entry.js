// The demo page's Uppy: the stock npm packages, bundled by esbuild when `upload-gateway demo`
// starts (gateway/demo/assets.py) and served as /static/uppy/uppy.js. Never committed.
import Uppy from '@uppy/core'
import AwsS3 from '@uppy/aws-s3'

window.Uppy = Uppy
window.AwsS3 = AwsS3

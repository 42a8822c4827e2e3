// The test page's bundle: stock @uppy/core and @uppy/aws-s3 from node_modules, nothing else.
// Built with esbuild at test time (tests/system/e2e/test_uppy_browser.py); never committed.
import Uppy from '@uppy/core'
import AwsS3 from '@uppy/aws-s3'

window.Uppy = Uppy
window.AwsS3 = AwsS3

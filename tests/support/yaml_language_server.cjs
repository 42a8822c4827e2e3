// Checks YAML files as an editor does: yaml-language-server (behind VS Code's YAML extension and
// most editors' YAML support) with the schema each file's modeline names.
//
//   node yaml_language_server.cjs FILE [LINE:CHARACTER]
//
// Prints one JSON object: {"diagnostics": [{"line": 1-based, "message": ...}], "hover": text of
// the hover at LINE:CHARACTER (both 1-based), or null}.

const fs = require("node:fs");
const path = require("node:path");
const { pathToFileURL, fileURLToPath } = require("node:url");
const { getLanguageService } = require("yaml-language-server");
const { TextDocument } = require("vscode-languageserver-textdocument");

async function main() {
  const [file, at] = process.argv.slice(2);
  const service = getLanguageService({
    // Schemas are local files here; nothing is fetched.
    schemaRequestService: async (uri) => fs.readFileSync(fileURLToPath(uri), "utf8"),
    workspaceContext: { resolveRelativePath: (rel, resource) => new URL(rel, resource).href },
  });
  service.configure({ validate: true, hover: true, completion: true, schemas: [] });
  const uri = pathToFileURL(path.resolve(file)).href;
  const document = TextDocument.create(uri, "yaml", 1, fs.readFileSync(file, "utf8"));
  const diagnostics = (await service.doValidation(document, false)).map((d) => ({
    line: d.range.start.line + 1,
    message: d.message,
  }));
  let hover = null;
  if (at) {
    const [line, character] = at.split(":").map(Number);
    const found = await service.doHover(document, { line: line - 1, character: character - 1 });
    hover = found ? found.contents.value : null;
  }
  process.stdout.write(JSON.stringify({ diagnostics, hover }) + "\n");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

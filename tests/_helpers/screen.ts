/**
 * A small terminal: enough of VT100 to replay what sloth-runner's live view
 * writes (text, CR, LF, cursor to previous lines, clear to end of screen, colours
 * and cursor visibility ignored), so tests and the README capture can see the
 * screen a person would see, at any point of the byte stream.
 */
export class Screen {
  lines: string[] = [""];
  row = 0;
  col = 0;
  /** Every frame the screen showed just before a "clear to end" (a redraw). */
  frames: string[] = [];

  write(text: string): this {
    // deno-lint-ignore no-control-regex
    const tokens = text.match(/\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+/g) ?? [];
    for (const token of tokens) {
      if (token === "\r") this.col = 0;
      else if (token === "\n") {
        this.row++;
        this.col = 0;
        while (this.lines.length <= this.row) this.lines.push("");
      } else if (token.startsWith("\x1b[")) this.#escape(token);
      else this.#put(token);
    }
    return this;
  }

  #escape(token: string): void {
    const command = token.at(-1);
    const n = Number(token.slice(2, -1)) || 1;
    if (command === "F") {
      this.row = Math.max(0, this.row - n);
      this.col = 0;
    } else if (command === "A") this.row = Math.max(0, this.row - n);
    else if (command === "J") {
      this.frames.push(this.text());
      this.lines[this.row] = this.lines[this.row].slice(0, this.col);
      this.lines.length = this.row + 1;
    } else if (command === "K") this.lines[this.row] = this.lines[this.row].slice(0, this.col);
    // m (colours), h/l (cursor visibility) change nothing on screen.
  }

  #put(text: string): void {
    const line = this.lines[this.row];
    const chars = [...line];
    const add = [...text];
    chars.splice(this.col, add.length, ...add);
    this.lines[this.row] = chars.join("");
    this.col += add.length;
  }

  text(): string {
    return this.lines.join("\n").replace(/\n+$/, "\n");
  }
}

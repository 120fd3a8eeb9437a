// A screen the API refused, shown where the user typed it: the message with its line and column, the line
// with a caret under the column, what was expected, and the API's suggestions as buttons that put the
// suggested name in place of the misspelt one. The cursor goes to the position the API names.

import { escapeHtml } from './format.js';

/** The line the error is on, and a caret under its column (from `line`/`column`, else `position`). */
export function errorContext(text, problem) {
  let { line, column } = problem;
  if ((line === null || column === null) && problem.position !== null) {
    const before = text.slice(0, problem.position);
    line = before.split('\n').length;
    column = problem.position - before.lastIndexOf('\n');
  }
  if (line === null || column === null) return '';
  const source = text.split('\n')[line - 1] ?? '';
  return `${source}\n${' '.repeat(Math.max(0, column - 1))}^`;
}

/** Wires `box` to show errors about `input`; `onFix()` runs after a suggestion was put in place. */
export function screenErrorBox(box, input, onFix) {
  box.addEventListener('click', (event) => {
    const button = event.target.closest('button.suggestion');
    if (!button) return;
    const position = Number(box.dataset.position);
    const text = input.value;
    if (box.dataset.position !== '' && Number.isInteger(position)) {
      const word = /[A-Za-z0-9_]*/y;
      word.lastIndex = position;
      const length = (word.exec(text) || [''])[0].length;
      input.value = text.slice(0, position) + button.dataset.name + text.slice(position + length);
    }
    onFix();
  });
  return {
    show(problem) {
      const text = input.value;
      input.setAttribute('aria-invalid', 'true');
      const at = problem.line !== null && problem.column !== null ? ` (line ${problem.line}, column ${problem.column})` : '';
      const context = errorContext(text, problem);
      const repeats = problem.expected.length && problem.expected.every((item) => problem.suggestions.includes(item));
      const expected = problem.expected.length && !repeats ? `<p>Expected ${problem.expected.map(escapeHtml).join(', ')}.</p>` : '';
      const suggestions = problem.suggestions.length
        ? `<p>Did you mean ${problem.suggestions
            .map((name) => `<button type="button" class="link suggestion" data-name="${escapeHtml(name)}">${escapeHtml(name)}</button>`)
            .join(', ')}?</p>`
        : '';
      box.innerHTML = `<p class="message"><strong>${escapeHtml(problem.message)}</strong>${escapeHtml(at)}</p>${
        context ? `<pre class="where-context">${escapeHtml(context)}</pre>` : ''
      }${expected}${suggestions}`;
      box.hidden = false;
      box.dataset.position = problem.position ?? '';
      if (problem.position !== null) {
        const position = Math.min(problem.position, text.length);
        input.focus();
        input.setSelectionRange(position, Math.min(text.length, position + 1));
      }
    },
    clear() {
      box.hidden = true;
      box.innerHTML = '';
      input.removeAttribute('aria-invalid');
    },
  };
}

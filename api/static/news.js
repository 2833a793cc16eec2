// The news panel: the latest stories, first from the history route (GET /news), then live from the news
// stream (/v1beta1/news, subscribed to "*"). A story sent again (same id, newer updated_at) replaces
// the one shown. At most MAX_STORIES are kept, newest first; the DOM is written once per animation frame.

const MAX_STORIES = 40;

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "–" : date.toISOString().slice(5, 19).replace("T", " ");
}

export class NewsPanel {
  /** @param {HTMLOListElement} list */
  constructor(list) {
    this.list = list;
    this.stories = new Map(); // id -> story (Alpaca's fields), newest created first when drawn
    this.frame = 0;
  }

  /** A story ({"T":"n"} from the stream, or an item of GET /news); true if it was taken. */
  take(story) {
    if (story.T !== undefined && story.T !== "n") return false;
    const shown = this.stories.get(story.id);
    if (shown && shown.updated_at >= story.updated_at) return false; // an older or the same version
    this.stories.set(story.id, story);
    this.schedule();
    return true;
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The stories shown, newest first (for tests). */
  get shown() {
    return [...this.stories.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : b.id - a.id));
  }

  draw() {
    const stories = this.shown.slice(0, MAX_STORIES);
    for (const id of [...this.stories.keys()]) {
      if (!stories.some((story) => story.id === id)) this.stories.delete(id);
    }
    this.list.replaceChildren(
      ...stories.map((story) => {
        const li = document.createElement("li");
        li.dataset.id = String(story.id);
        const when = document.createElement("span");
        when.className = "when";
        when.textContent = clock(story.created_at);
        const symbols = document.createElement("span");
        symbols.className = "symbols";
        symbols.textContent = story.symbols.length > 0 ? story.symbols.join(" ") : "market";
        const headline = document.createElement(story.url ? "a" : "span");
        headline.className = "headline";
        headline.textContent = story.headline;
        if (story.url) {
          headline.href = story.url;
          headline.rel = "noopener";
          headline.target = "_blank";
        }
        if (story.updated_at !== story.created_at) headline.title = `updated ${clock(story.updated_at)}`;
        li.append(when, symbols, headline);
        return li;
      }),
    );
  }
}

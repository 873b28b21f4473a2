(function () {
  const viewer = document.getElementById("viewer");
  const image = document.getElementById("viewer-image");
  const caption = document.getElementById("viewer-caption");
  const curve = document.getElementById("viewer-curve");
  const units = Array.from(document.querySelectorAll(".unit"));
  let current = -1;
  function show(position) {
    current = (position + units.length) % units.length;
    const unit = units[current];
    image.src = unit.querySelector("img").getAttribute("src");
    image.alt = unit.querySelector("img").alt;
    caption.textContent = unit.dataset.title;
    const svg = unit.querySelector("svg.curve");
    curve.innerHTML = svg ? svg.outerHTML : "";
    viewer.dataset.unit = unit.dataset.unit;
    if (!viewer.open) viewer.showModal();
    history.replaceState(null, "", "#" + unit.id);
  }
  function close() {
    if (viewer.open) viewer.close();
  }
  units.forEach(function (unit, position) {
    unit.querySelector("a").addEventListener("click", function (event) {
      event.preventDefault();
      show(position);
    });
  });
  viewer.addEventListener("click", close);
  viewer.addEventListener("close", function () {
    if (viewer.open) return; // shown again before this event came: keep its unit
    delete viewer.dataset.unit;
    history.replaceState(null, "", location.pathname + location.search);
  });
  document.addEventListener("keydown", function (event) {
    if (!viewer.open) return;
    if (event.key === "ArrowRight") show(current + 1);
    else if (event.key === "ArrowLeft") show(current - 1);
    else if (event.key === "Escape") close();
  });
  function follow() {
    const linked = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (linked && units.includes(linked)) show(units.indexOf(linked));
  }
  window.addEventListener("hashchange", follow);
  follow();
})();
